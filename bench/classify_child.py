"""Time Network.classify as `mnist-infer evaluate` runs it: OpenBLAS single-threaded, one
worker thread per core. Prints JSON {batch size: best seconds} for the test split.

Usage: OPENBLAS_NUM_THREADS=1 python classify_child.py CACHE_DIR WEIGHTS REPEAT BS...
"""

from __future__ import annotations

import json
import sys
import time

from mnist_infer.dataset import load_arrays
from mnist_infer.network import Network
from mnist_infer.weights import load_weights


def main() -> None:
    cache, weights, repeat, *sizes = sys.argv[1:]
    images, _ = load_arrays("test", cache)  # type: ignore[arg-type]
    net = Network(load_weights(weights))
    best = {bs: float("inf") for bs in sizes}
    for _ in range(int(repeat) + 1):  # the first round warms up
        for bs in sizes:
            t = time.perf_counter()
            net.classify(images, int(bs))
            best[bs] = min(best[bs], time.perf_counter() - t)
    print(json.dumps(best))


if __name__ == "__main__":
    main()
