"""`mnist-infer predict` on a folder of 10,000 PNG files and on one file."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import textbook_ch3 as tb
from common import (
    BENCH,
    CLI,
    PNG_DIR,
    Row,
    Section,
    Spawner,
    child_env,
    median_time,
    need_command,
    process_runs,
    test_split,
    weights_file,
)


def write_pngs(images: np.ndarray) -> Path:
    """The test digits as 28x28 greyscale PNG files (made once)."""
    from PIL import Image

    done = PNG_DIR / ".complete"
    if done.is_file() and done.read_text() == str(len(images)):
        return PNG_DIR
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.reshape(28, 28)).save(PNG_DIR / f"{i:05d}.png")
    done.write_text(str(len(images)))
    return PNG_DIR


def _naive_png_loop(folder: Path, params: dict[str, np.ndarray]) -> int:
    """Baseline: open each file with Pillow and run the textbook predict on it alone."""
    from PIL import Image

    count = 0
    for p in sorted(folder.glob("*.png")):
        x = np.asarray(Image.open(p).convert("L"), np.float32).reshape(1, 784) / 255.0
        tb.predict(params, x).argmax(axis=1)
        count += 1
    return count


def _predict_accuracy(stdout: str, labels: np.ndarray) -> float:
    """Share of JSON lines {"path": ".../01234.png", "digit": d} whose digit is the label."""
    hits = total = 0
    for line in stdout.splitlines():
        rec = json.loads(line)
        total += 1
        hits += rec["digit"] == labels[int(Path(rec["path"]).stem)]
    if total != len(labels):
        raise RuntimeError(f"predict printed {total} results for {len(labels)} files")
    return hits / total


def bench_predict(sec: Section, spawner: Spawner) -> None:
    """Predict: `mnist-infer predict DIR` on 10,000 PNG files."""
    images, labels = test_split()
    weights = weights_file()
    help_text = need_command("predict")
    folder = write_pngs(images)
    variants = {"predict DIR": [CLI, "predict", "--weights", str(weights), "--json", str(folder)]}
    if "--no-preprocess" in help_text:
        variants["predict DIR --no-preprocess"] = [*variants["predict DIR"], "--no-preprocess"]
    runs = process_runs(spawner, variants, repeat=3, keep=None, warmup=False)
    params = tb.init_network(str(weights))
    t_naive = median_time(lambda: _naive_png_loop(folder, params), repeat=1, warmup=0)
    n = len(images)
    sec.rows.append(Row("naive loop: Pillow + textbook predict per file", n / t_naive, "images/s"))
    for name, rs in runs.items():
        t = statistics.median(r["seconds"] for r in rs)
        rss = max(r["maxrss_bytes"] for r in rs) / 2**20
        sec.rows += [
            Row(f"{name}, whole process", n / t, "images/s"),
            Row(f"{name}: peak RSS", rss, "MiB"),
            Row(f"{name} / naive loop: time", t / t_naive, "x"),
        ]
        sec.notes.append(f"{name}: accuracy {_predict_accuracy(rs[0]['stdout'], labels):.4f}")
    sec.notes.append("peak RSS is the largest single process (decoding workers are not summed)")
    _against_plain_loop(sec)


def _against_plain_loop(sec: Section) -> None:
    """predict_speed.py's ratios (default weights): predict DIR against a plain one-process
    Pillow + numpy loop, and predict one.png against starting Python with numpy and Pillow."""
    argv = [sys.executable, str(BENCH / "predict_speed.py"), "--runs", "5"]
    p = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
    if p.returncode != 0:
        raise RuntimeError(f"predict_speed.py exited {p.returncode}: {p.stderr.strip()[-300:]}")
    r = json.loads(p.stdout)
    for name, secs in r["seconds"].items():
        sec.rows.append(Row(f"{name} (default weights), whole process", secs, "s"))
    for name, ratio in r["ratios"].items():
        sec.rows.append(Row(f"{name}: time", ratio, "x", r["targets"][name]))
