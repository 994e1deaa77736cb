"""`mnist-infer predict` against a plain loop on 10,000 28x28 PNG files, and on one file.

Prints JSON: median wall times of whole processes, run in turn (A B C A B C ...), and the
ratios of the medians. The plain loop is one process: Pillow decodes each file, no
preprocessing, a numpy forward pass in batches of 1,000 with the same weights, one line
printed per file. Needs the MNIST test files in $MNIST_INFER_TEST_DATA/mnist (or
../shared/mnist beside the repository).

    python bench/predict_speed.py [--runs 5] [--weights FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "work" / "predict-speed"
FLOOR = "import numpy, PIL.Image"


def plain_loop(folder: str, weights: str) -> None:
    """The baseline: decode every PNG with Pillow, forward in batches of 1,000, print."""
    import pickle

    import numpy as np
    from PIL import Image

    with open(weights, "rb") as f:
        net = pickle.load(f)  # the book's format (our own file)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    out = []
    for i in range(0, len(names), 1000):
        chunk = names[i : i + 1000]
        x = np.stack(
            [np.asarray(Image.open(os.path.join(folder, n)).convert("L")) for n in chunk]
        ).reshape(len(chunk), 784) / np.float32(255)
        a = x.astype(np.float32)
        for k in (1, 2):
            a = 1 / (1 + np.exp(-(a @ net[f"W{k}"] + net[f"b{k}"])))
        z = a @ net["W3"] + net["b3"]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        out += [
            f"{os.path.join(folder, n)}  {d}  {c:.3f}"
            for n, d, c in zip(chunk, p.argmax(1), p.max(1), strict=True)
        ]
    sys.stdout.write("\n".join(out) + "\n")


def _pngs(count: int) -> Path:
    """The first `count` MNIST test digits as 28x28 PNG files (made once, never committed)."""
    import numpy as np
    from PIL import Image

    from mnist_infer.dataset import load_arrays
    from mnist_infer.download import fetch

    folder = WORK / f"pngs-{count}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    shared = Path(os.environ.get("MNIST_INFER_TEST_DATA", REPO.parent / "shared"))
    cache = WORK / "cache"
    fetch("test", cache, mirrors=[str(shared / "mnist")], quiet=True)
    images, _ = load_arrays("test", cache)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images[:count]):
        Image.fromarray(np.asarray(img).reshape(28, 28)).save(folder / f"{i:05d}.png")
    done.write_text("")
    return folder


def _time(argv: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{argv[:3]} exited {r.returncode}: {r.stderr.decode()[-300:]}")
    return dt


def _compare(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median seconds of each command, one warm-up each, then run in turn."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for argv in commands.values():
        _time(argv)
    for _ in range(runs):
        for k, argv in commands.items():
            times[k].append(_time(argv))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--weights", help="weights file (default: the shipped default)")
    ap.add_argument("--loop", nargs=2, metavar=("FOLDER", "WEIGHTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loop:
        plain_loop(*args.loop)
        return
    from mnist_infer.shipped import weights_path

    weights = str(weights_path(args.weights))
    folder = _pngs(10_000)
    cli = str(Path(sys.executable).parent / "mnist-infer")
    predict = [cli, "predict", "--weights", weights]
    many = _compare(
        {
            "plain loop": [sys.executable, __file__, "--loop", str(folder), weights],
            "predict DIR": [*predict, str(folder)],
            "predict DIR --no-preprocess": [*predict, "--no-preprocess", str(folder)],
        },
        args.runs,
    )
    one = _compare(
        {
            FLOOR: [sys.executable, "-c", FLOOR],
            "predict one.png": [*predict, str(folder / "00000.png")],
        },
        args.runs * 2,
    )
    base = many["plain loop"]
    result = {
        "files": 10_000,
        "weights": weights,
        "runs": args.runs,
        "seconds": many | one,
        "ratios": {
            "predict DIR / plain loop": many["predict DIR"] / base,
            "predict DIR --no-preprocess / plain loop": many["predict DIR --no-preprocess"] / base,
            f"predict one.png / python -c '{FLOOR}'": one["predict one.png"] / one[FLOOR],
        },
        "targets": {
            "predict DIR / plain loop": 1.0,
            "predict DIR --no-preprocess / plain loop": 0.8,
            f"predict one.png / python -c '{FLOOR}'": 1.1,
        },
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
