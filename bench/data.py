"""Loading the test split from a warm cache, against the textbook's load_mnist."""

from __future__ import annotations

import textbook_ch3 as tb
from common import (
    CACHE,
    Row,
    Section,
    Skip,
    Spawner,
    ensure_cache,
    has_module,
    median_time,
    textbook_pickle,
)


def bench_data(sec: Section, spawner: Spawner) -> None:
    """Data: load the test set from a warm cache."""
    if not has_module("mnist_infer.dataset"):
        raise Skip("mnist_infer.dataset not available yet")
    from mnist_infer.dataset import load_arrays

    ensure_cache(spawner)
    ours = median_time(lambda: load_arrays("test", CACHE), repeat=20)
    pkl = str(textbook_pickle())
    theirs = median_time(lambda: tb.load_mnist(pkl), repeat=5)
    sec.rows += [
        Row("load_arrays('test'), warm cache", ours * 1e3, "ms"),
        Row("textbook load_mnist (pickle, normalize)", theirs * 1e3, "ms"),
        Row("load_arrays / textbook load_mnist", ours / theirs, "x"),
    ]
