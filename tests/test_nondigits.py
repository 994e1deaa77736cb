"""The shipped default weights' not-a-digit rule on non-digits and on MNIST's test digits.

The non-digits are generated here (tests/nondigits.py), with code and seeds of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nondigits import KINDS, flagged, read_back
from textbook import real_test_set

COUNT = 80  # per kind
# The target for real non-digits is 0.80 caught (0.95 the aim); this set's unseen characters
# (glyphs no training kind draws) are the hardest part of it. The shipped weights catch 0.88.
MIN_CAUGHT = 0.85
MAX_DIGITS_FLAGGED = 0.01


def test_the_rule_catches_non_digits() -> None:
    caught, total, per_kind = 0, 0, {}
    for i, (name, kind) in enumerate(KINDS.items()):
        images, refused = read_back(kind, COUNT, seed=100 + i)
        hits = flagged(images)
        per_kind[name] = f"{hits.mean():.2f} ({refused} refused)"
        caught += int(hits.sum())
        total += len(hits)
    assert total >= 0.9 * COUNT * len(KINDS)  # preprocessing reads nearly all of them
    assert caught / total >= MIN_CAUGHT, per_kind


def test_the_rule_spares_mnist_test_digits(real_mnist_dir: Path) -> None:
    images, _ = real_test_set(real_mnist_dir)
    rate = float(np.mean(flagged(images)))
    assert rate <= MAX_DIGITS_FLAGGED, rate


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_is_drawn_and_read_back(name: str) -> None:
    images, refused = read_back(KINDS[name], 6, seed=1)
    assert len(images) + refused == 6
    assert images.shape[1] == 784
    again, _ = read_back(KINDS[name], 6, seed=1)
    np.testing.assert_array_equal(images, again)
