"""Time Network.classify as `mnist-infer evaluate` runs it: OpenBLAS single-threaded, one
worker thread per core; and, for comparison, on one thread, and the network's three matrix
products alone on 1000-row slices already in cache (the compute floor of the pass), on one
thread and shared out to one thread per core as classify shares its slices. Prints JSON of
best seconds and the one-thread GEMM peak in FLOP/s.

Usage: OPENBLAS_NUM_THREADS=1 python classify_child.py CACHE_DIR WEIGHTS REPEAT BS...
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
from gemm import gemm_peak

from mnist_infer.dataset import load_arrays
from mnist_infer.network import Network, _cpus
from mnist_infer.weights import load_weights

SLICE = 1000


def matmul_chain(params: dict[str, np.ndarray], n: int) -> Callable[[], object]:
    """The forward pass's matrix products alone for n images, on one cached slice."""
    ws = [np.ascontiguousarray(params[f"W{i}"], np.float32) for i in range(1, 4)]
    x = np.random.default_rng(0).random((SLICE, ws[0].shape[0]), np.float32)
    outs = [np.empty((SLICE, w.shape[1]), np.float32) for w in ws]

    def run() -> None:
        for _ in range(n // SLICE):
            h = x
            for w, out in zip(ws, outs, strict=True):
                h = np.matmul(h, w, out=out)

    return run


def threaded(runs: list[Callable[[], object]]) -> Callable[[], object]:
    """Each of runs at once, the first in this thread."""

    def run() -> None:
        threads = [threading.Thread(target=r) for r in runs[1:]]
        for t in threads:
            t.start()
        runs[0]()
        for t in threads:
            t.join()

    return run


def main() -> None:
    cache, weights, repeat, *sizes = sys.argv[1:]
    images, _ = load_arrays("test", cache)  # type: ignore[arg-type]
    params = load_weights(weights)
    net = Network(params)
    fns: dict[str, Callable[[], object]] = {
        bs: lambda bs=bs: net.classify(images, int(bs)) for bs in sizes
    }
    fns["one thread"] = lambda: net.classify(images, SLICE, workers=1)
    fns["matmuls, one thread"] = matmul_chain(params, len(images))
    k = _cpus()
    fns["matmuls, threads"] = threaded([matmul_chain(params, len(images) // k) for _ in range(k)])
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(int(repeat) + 1):  # the first round warms up
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    best["gemm peak, one thread"] = gemm_peak()  # a rate (FLOP/s), not a time
    print(json.dumps(best))


if __name__ == "__main__":
    main()
