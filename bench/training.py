"""Training throughput: one epoch over the training split."""

from __future__ import annotations

import statistics

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
    _blas_threads(sec, spawner)


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
