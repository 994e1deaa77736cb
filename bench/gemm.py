"""The machine's float32 matrix-product peak, measured in a process of its own.

Other threads in the same process (an inference engine's spinning pool, say) would take
cores from the measurement and make the peak, and so the GEMM limit, look easier to meet.

Usage: python gemm.py  (prints the best rate in FLOP/s; OPENBLAS_NUM_THREADS sets the threads)
"""

from __future__ import annotations

import time

import numpy as np

SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 2048, 1024))


def gemm_peak(repeat: int = 5) -> float:
    """Best float32 matmul rate in FLOP/s, from a few big products."""
    best = 0.0
    for m, k, n in SHAPES:
        a = np.ones((m, k), np.float32)
        b = np.ones((k, n), np.float32)
        out = np.empty((m, n), np.float32)
        np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
        for _ in range(repeat):
            t = time.perf_counter()
            np.matmul(a, b, out=out)
            best = max(best, 2.0 * m * k * n / (time.perf_counter() - t))
    return best


if __name__ == "__main__":
    print(gemm_peak())
