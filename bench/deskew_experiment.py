"""Does moment-based deskewing help the default 784-800-300-10 network? (a measurement)

Two networks are trained with the shipped default's recipe (`--hidden 800,300 --ink-augment`,
adam, batch 100, seed 0, 5,000 validation images, temperature calibration) for the same
number of epochs: (a) as it is, (b) with every training batch deskewed after the ink
augmentation, and the validation, test and development-set digits deskewed before the
network. Both are then scored on MNIST's test split and on the styles of tests/devsets.py.

    python bench/deskew_experiment.py check             # the deskew self-check
    python bench/deskew_experiment.py time [--batches N] # time both variants side by side
    python bench/deskew_experiment.py run --epochs E    # train both at once, then score
    python bench/deskew_experiment.py report --epochs E --count N  # score them again

`--seed S` trains and scores another pair (seed 0 is the shipped default's). The report adds
the images only one of the two gets right, with McNemar's exact test on them.

Needs MNIST_INFER_TEST_DATA (the folder holding mnist/*.gz). Weights, logs and the data
cache go to --work (default /tmp/deskew), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIDE = 28
RECIPE = {"hidden": (800, 300), "ink_augment": True, "batch_size": 100}


def _stem(variant: str, epochs: int, seed: int) -> str:
    return f"{variant}-e{epochs}" + (f"-s{seed}" if seed else "")


def deskew(x: Any) -> np.ndarray:
    """Digits sheared so that their main axis is vertical; float32 of the input's shape.

    Per image, skew = mu11 / mu02 about the centre of mass, and output pixel (y, x) takes
    the input at (y, x + skew * (y - cy)), bilinearly along x (outside is blank). A shear
    about cy keeps the centre of mass, so the digit stays where predict's framing put it.
    """
    a = np.asarray(x, np.float32)
    shape = a.shape
    img = a.reshape(-1, SIDE, SIDE)
    n = len(img)
    r = np.arange(SIDE, dtype=np.float32)
    mass = img.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1)
    rows, cols = img.sum(axis=2), img.sum(axis=1)  # (n, 28): ink per row y, per column x
    cy = rows @ r / safe
    cx = cols @ r / safe
    dy = r[None, :] - cy[:, None]  # (n, 28)
    dx = r[None, :] - cx[:, None]
    mu02 = (rows * dy**2).sum(axis=1) / safe
    mu11 = np.einsum("nyx,ny,nx->n", img, dy, dx) / safe
    skew = np.where(mu02 > 1e-6, mu11 / np.where(mu02 > 1e-6, mu02, 1), 0).astype(np.float32)
    src = r[None, None, :] + (skew[:, None] * dy)[:, :, None]  # (n, y, x) source column
    x0 = np.floor(src)
    f = src - x0
    x0 = x0.astype(np.intp)
    pad = np.zeros((n, SIDE, SIDE + 2), np.float32)  # column 0 and 29 are blank
    pad[:, :, 1:-1] = img
    i0 = np.clip(x0 + 1, 0, SIDE + 1)
    i1 = np.clip(x0 + 2, 0, SIDE + 1)
    v0 = np.take_along_axis(pad, i0, axis=2)
    v1 = np.take_along_axis(pad, i1, axis=2)
    out = v0 * (1 - f) + v1 * f
    return out.reshape(shape).astype(np.float32, copy=False)


def deskew_u8(x: Any) -> np.ndarray:
    """deskew for uint8 images, rounded back to uint8 (what Network.classify takes)."""
    return np.clip(deskew(x) + 0.5, 0, 255).astype(np.uint8)


def self_check() -> None:
    """A bar slanted by 0.4 px per row comes out upright; an upright bar stays as it is."""
    img = np.zeros((SIDE, SIDE), np.float32)
    for y in range(4, 24):
        img[y, round(14 + 0.4 * (y - 14)) - 1 : round(14 + 0.4 * (y - 14)) + 2] = 255
    out = deskew(img)
    cols = out[4:24].argmax(axis=1)
    centre = (out[4:24] * np.arange(SIDE)).sum(axis=1) / out[4:24].sum(axis=1)
    slope = np.polyfit(np.arange(4, 24), centre, 1)[0]  # was 0.4 px per row
    assert np.ptp(cols) <= 1 and abs(slope) < 0.05, (cols, slope)
    assert abs(out.sum() - img.sum()) < 0.02 * img.sum()
    upright = np.zeros((SIDE, SIDE), np.float32)
    upright[4:24, 13:16] = 255
    assert np.allclose(deskew(upright), upright)
    batch = np.stack([img, upright, np.zeros_like(img)]).reshape(3, SIDE * SIDE)
    assert np.allclose(deskew(batch)[0], out.reshape(-1))
    assert not deskew(batch)[2].any()  # a blank image stays blank (no division by zero)
    print(f"self-check passed: a bar slanted 0.40 px/row leans {slope:+.3f} px/row after deskew")


def _mirror() -> str:
    return str(Path(os.environ["MNIST_INFER_TEST_DATA"]) / "mnist")


def _patch_for_deskew() -> None:
    """Make mnist_infer.train's (b): deskew after low_resolution and before every evaluation."""
    import mnist_infer.augment as aug
    import mnist_infer.train as tr
    from mnist_infer.network import Network

    low = aug.low_resolution

    def low_then_deskew(x: Any, rng: np.random.Generator, **kw: Any) -> np.ndarray:
        return deskew(low(x, rng, **kw))

    class DeskewNetwork(Network):
        """Deskews what it is asked to classify (validation, test) or score (calibration)."""

        def classify(self, images: Any, *args: Any, **kw: Any) -> Any:
            return super().classify(deskew_u8(images), *args, **kw)

        def logits(self, x: Any) -> Any:
            return super().logits(deskew(x))

        def loss(self, x: Any, t: Any) -> float:
            # gradient's path: the training batch was deskewed by low_resolution already
            return self.last.forward(Network.logits(self, x), np.asarray(t))

    aug.low_resolution = low_then_deskew  # type: ignore[assignment]
    tr.Network = DeskewNetwork  # type: ignore[misc]


def train_variant(variant: str, epochs: int, work: Path, seed: int) -> None:
    """Train (a) or (b) for `epochs` epochs; weights and a log of the epochs under work/."""
    from mnist_infer.train import TrainOptions, format_epoch, train

    if variant == "b":
        _patch_for_deskew()
    opts = TrainOptions(epochs=epochs, seed=seed, **RECIPE)  # type: ignore[arg-type]
    out = work / f"{_stem(variant, epochs, seed)}.pkl"
    log: dict[str, Any] = {"variant": variant, "epochs": epochs, "seconds": []}
    t0 = time.time()

    def on_epoch(s: Any) -> None:
        log["seconds"].append(s.seconds)
        print(f"[{variant}] {format_epoch(s, epochs)}", flush=True)

    res = train(opts, out, cache_dir=work / "cache", mirrors=[_mirror()], force=True,
                on_epoch=on_epoch)  # fmt: skip
    log |= {"wall": time.time() - t0, "test_accuracy": res.test_accuracy, "weights": str(out)}
    log["temperature"] = res.metadata["temperature"]
    log["final_val_accuracy"] = res.metadata["final_val_accuracy"]
    (work / f"{_stem(variant, epochs, seed)}.json").write_text(json.dumps(log, indent=1))
    print(f"[{variant}] done in {log['wall']:.0f} s, test accuracy {res.test_accuracy:.4f}")


def time_variant(variant: str, batches: int, work: Path) -> None:
    """Seconds per training batch of the recipe (augmentation, deskew for b, gradient, update)."""
    import mnist_infer.augment as aug
    from mnist_infer.dataset import load_arrays
    from mnist_infer.network import Network
    from mnist_infer.optimizers import OPTIMIZERS
    from mnist_infer.train import init_params

    if variant == "b":
        _patch_for_deskew()
    images, labels = load_arrays("train", work / "cache", mirrors=[_mirror()])
    rng = np.random.default_rng(0)
    net = Network(init_params([784, 800, 300, 10], rng))
    opt = OPTIMIZERS["adam"](0.003, 0.0)
    t0 = time.perf_counter()
    for _ in range(batches):
        idx = rng.choice(len(images), 100, replace=False)
        x = aug.augment(images[idx], rng, rotate=12.0, scale=0.1, shear=0.35)
        x = aug.low_resolution(aug.stroke_width(x, rng), rng)
        x *= np.float32(1 / 255)
        opt.update(net.params, net.gradient(x, labels[idx]), 0.003)
    per = (time.perf_counter() - t0) / batches
    print(f"[{variant}] {per * 1000:.1f} ms per batch, {per * 550:.1f} s per epoch of 550 batches")


def _spawn(args: list[str], work: Path, name: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    cmd = [sys.executable, __file__, *args, "--work", str(work)]
    with open(work / f"{name}.log", "wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def score_variant(variant: str, weights: Path, count: int, cache: Path) -> dict[str, Any]:
    """MNIST test accuracy and ECE, and accuracy per development-set style."""
    sys.path.insert(0, str(ROOT / "tests"))
    import devsets

    from mnist_infer.dataset import load_arrays
    from mnist_infer.predict import load_network
    from mnist_infer.report import calibration_error

    prep = deskew_u8 if variant == "b" else (lambda d: d)
    net = load_network(str(weights))
    x, t = load_arrays("test", cache, mirrors=[_mirror()])
    pred, conf = net.classify(prep(x), 1000)
    res: dict[str, Any] = {
        "test_accuracy": float(np.mean(pred == t)),
        "test_correct": pred == t,
        "test_ece": calibration_error(conf, pred == t),
        "styles": {},
        "style_correct": [],
    }
    for name, render in devsets.STYLES.items():
        digits, keep, refused = _rendered(devsets, x, t, render, count)
        p, _ = net.classify(prep(digits), 1000) if len(digits) else (np.array([]), None)
        res["styles"][name] = float(np.sum(p == keep)) / (len(keep) + refused)
        res["style_correct"].append(p == keep)
    return res


_RENDER_CACHE: dict[str, Any] = {}


def _rendered(devsets: Any, x: Any, t: Any, render: Any, count: int) -> Any:
    """devsets.rendered, computed once per style and shared by both variants."""
    key = render.__qualname__ + repr(getattr(render, "__closure__", None) and
                                     [c.cell_contents for c in render.__closure__])  # fmt: skip
    if key not in _RENDER_CACHE:
        _RENDER_CACHE[key] = devsets.rendered(x, t, render, count)
    return _RENDER_CACHE[key]


def _discordant(a: np.ndarray, b: np.ndarray) -> str:
    """Images only (b) gets right and only (a) gets right, and McNemar's exact two-sided p."""
    from math import comb

    nb, na = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    n, k = na + nb, min(na, nb)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return f"only (b) right {nb}, only (a) right {na}, McNemar p = {p:.3g}"


def report(work: Path, epochs: int, count: int, seed: int) -> None:
    """Score both trained networks and print the Markdown table."""
    logs = {v: json.loads((work / f"{_stem(v, epochs, seed)}.json").read_text()) for v in "ab"}
    scores = {v: score_variant(v, Path(logs[v]["weights"]), count, work / "cache") for v in "ab"}
    a, b = scores["a"], scores["b"]
    print(f"\nseed {seed}, {epochs} epochs each, {count} digits per style\n")
    print("| | (a) ink augment | (b) + deskew | b - a |")
    print("| --- | --- | --- | --- |")
    for name in a["styles"]:
        sa, sb = a["styles"][name], b["styles"][name]
        print(f"| {name} | {sa:.3f} | {sb:.3f} | {sb - sa:+.3f} |")
    mean_a = float(np.mean(list(a["styles"].values())))
    mean_b = float(np.mean(list(b["styles"].values())))
    print(f"| mean of the styles | {mean_a:.3f} | {mean_b:.3f} | {mean_b - mean_a:+.3f} |")
    ta, tb = a["test_accuracy"], b["test_accuracy"]
    print(f"| MNIST test accuracy | {ta:.4f} | {tb:.4f} | {tb - ta:+.4f} |")
    print(f"| MNIST test ECE | {a['test_ece']:.4f} | {b['test_ece']:.4f} | |")
    va, vb = logs["a"]["final_val_accuracy"], logs["b"]["final_val_accuracy"]
    print(f"| final validation accuracy | {va:.4f} | {vb:.4f} | {vb - va:+.4f} |")
    print(f"| temperature | {logs['a']['temperature']:.4f} | {logs['b']['temperature']:.4f} | |")
    for v in "ab":
        s = logs[v]["seconds"]
        print(f"({v}) epochs {len(s)}, {np.median(s):.1f} s per epoch (median; "
              f"{min(s):.1f}-{max(s):.1f}), wall {logs[v]['wall']:.0f} s")  # fmt: skip
    print("MNIST test:", _discordant(a.pop("test_correct"), b.pop("test_correct")))
    pa, pb = (np.concatenate(s.pop("style_correct")) for s in (a, b))
    print("all styles pooled:", _discordant(pa, pb))
    (work / f"scores-{_stem('ab', epochs, seed)}-n{count}.json").write_text(
        json.dumps(scores, indent=1)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["check", "time", "train", "run", "report"])
    ap.add_argument("variant", nargs="?", choices=["a", "b"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--count", type=int, default=300, help="digits per development-set style")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/deskew"))
    args = ap.parse_args()
    work: Path = args.work
    if args.command == "check":
        self_check()
        return
    work.mkdir(parents=True, exist_ok=True)
    from mnist_infer.download import fetch

    fetch("all", work / "cache", mirrors=[_mirror()])
    if args.command == "train":
        train_variant(args.variant, args.epochs, work, args.seed)
    elif args.command == "time" and args.variant:
        time_variant(args.variant, args.batches, work)
    elif args.command in ("time", "run"):
        self_check()
        what = ["train", "--epochs", str(args.epochs), "--seed", str(args.seed)]
        what = what if args.command == "run" else ["time"]
        what += ["--batches", str(args.batches)]
        procs = [_spawn([what[0], v, *what[1:]], work, f"{args.command}-{v}") for v in "ab"]
        codes = [p.wait() for p in procs]
        for v in "ab":
            print((work / f"{args.command}-{v}.log").read_text().rstrip())
        if any(codes):
            sys.exit(f"a child failed: exit codes {codes}")
        if args.command == "run":
            report(work, args.epochs, args.count, args.seed)
    else:
        report(work, args.epochs, args.count, args.seed)


if __name__ == "__main__":
    main()
