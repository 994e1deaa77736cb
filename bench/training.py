"""Training throughput: one epoch over the training split, and against PyTorch on one thread."""

from __future__ import annotations

import statistics
import time

import numpy as np
from common import (
    CACHE,
    CLI,
    TARGETS,
    WORK,
    Row,
    Section,
    Skip,
    Spawner,
    ensure_cache,
    has_module,
    need_command,
    process_runs,
)

from mnist_infer.network import _blas, _cpus

SHAPES = ((800, 300), (50, 100))  # the default weights' and the book's


def bench_train(sec: Section, spawner: Spawner) -> None:
    """Training throughput: one epoch over the training split, plain and augmented."""
    if not has_module("mnist_infer.train"):
        raise Skip("train not available")
    from mnist_infer.train import TrainOptions, train

    ensure_cache(spawner)
    for augment in (False, True):
        opts = TrainOptions(epochs=1, augment=augment)
        out = WORK / "train-bench.npz"
        _blas.limit()  # one BLAS thread, as `mnist-infer train` runs
        try:
            res = train(opts, out, cache_dir=CACHE, force=True, evaluate_test=False)
        finally:
            _blas.restore()
        (ep,) = res.history
        name = "augmented" if augment else "plain"
        sec.rows += [
            Row(
                f"train, one epoch ({name}, batch 100, adam)",
                ep.seconds,
                "s",
                TARGETS["epoch"] if not augment else None,
            ),
            Row(f"train throughput ({name})", ep.images_per_second, "images/s"),
        ]
    sec.notes.append(f"{res.metadata['train_images']} training images per epoch")
    _versus_torch(sec)
    _blas_threads(sec, spawner)


def _ours(hidden: tuple[int, ...]) -> float:
    """images/s of one plain epoch of `mnist-infer train` (one BLAS thread)."""
    from mnist_infer.train import TrainOptions, train

    _blas.limit()
    try:
        res = train(
            TrainOptions(hidden=hidden, epochs=1, calibrate=False),
            WORK / "train-vs-torch.npz",
            cache_dir=CACHE,
            force=True,
            evaluate_test=False,
        )
    finally:
        _blas.restore()
    return res.history[0].images_per_second


def _torch(hidden: tuple[int, ...]) -> float:
    """images/s of the same epoch in PyTorch on one thread: same layers, Adam, batch 100."""
    import torch

    from mnist_infer.dataset import load_arrays

    torch.set_num_threads(1)
    torch.manual_seed(0)
    images, labels = load_arrays("train", CACHE)
    n = len(images) - 5000  # the validation images are held out, as train does
    x = torch.from_numpy(images[:n].astype(np.float32) / 255)
    t = torch.from_numpy(labels[:n].astype(np.int64))
    sizes = [784, *hidden, 10]
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(n)
    t0 = time.perf_counter()
    for s in range(0, n, 100):
        idx = perm[s : s + 100]
        opt.zero_grad()
        loss_fn(model(x[idx]), t[idx]).backward()
        opt.step()
    return n / (time.perf_counter() - t0)


def _versus_torch(sec: Section) -> None:
    """One epoch of each shape here and in PyTorch, both on one thread, taken in turns; the
    best of three each (the machine is shared). The target: no more time per image."""
    if not has_module("torch"):
        sec.notes.append("against PyTorch: skipped: torch not installed (pip install torch)")
        return
    for hidden in SHAPES:
        shape = "-".join(map(str, (784, *hidden, 10)))
        ours, theirs = 0.0, 0.0
        for _ in range(3):
            ours = max(ours, _ours(hidden))
            theirs = max(theirs, _torch(hidden))
        sec.rows += [
            Row(f"train {shape}, one thread: mnist-infer", ours, "images/s"),
            Row(f"train {shape}, one thread: PyTorch", theirs, "images/s"),
            Row(
                f"train {shape}: time per image / PyTorch's",
                theirs / ours,
                "x",
                TARGETS["vs_torch"] if hidden == SHAPES[0] else None,
            ),
        ]


def _blas_threads(sec: Section, spawner: Spawner) -> None:
    """`mnist-infer train --epochs 1` as the CLI sets it up (one BLAS thread) against
    OpenBLAS's own threads (OPENBLAS_NUM_THREADS set by hand): wall and CPU time."""
    need_command("train")
    argv = [CLI, "train", "--epochs", "1", "--quiet", "--force", "--cache-dir", str(CACHE)]
    argv += ["--out", str(WORK / "train-threads.npz")]
    envs = {
        "one BLAS thread (default)": {},
        f"{_cpus()} BLAS threads": {"OPENBLAS_NUM_THREADS": str(_cpus())},
    }
    runs = process_runs(spawner, dict.fromkeys(envs, argv), repeat=3, envs=envs, warmup=False)
    wall = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_seconds"] for r in v) for k, v in runs.items()}
    for k in envs:
        sec.rows += [
            Row(f"train --epochs 1 process, {k}: wall", wall[k], "s"),
            Row(f"train --epochs 1 process, {k}: CPU", cpu[k], "s"),
        ]
    one, many = envs
    sec.rows += [
        Row(f"{one} / {many}: wall time", wall[one] / wall[many], "x"),
        Row(f"{one} / {many}: CPU time", cpu[one] / cpu[many], "x"),
    ]
