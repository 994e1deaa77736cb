"""Accuracy of predict (default preprocessing, default weights) per way of handing digits over.

The images are rendered at run time from MNIST test digits (tests/devsets.py); the table in
the README comes from `python tests/devsets.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from devsets import STYLES, accuracy
from textbook import real_test_set

COUNT = 150
THRESHOLD = {name: 0.95 for name in STYLES}


@pytest.fixture(scope="module")
def test_set(real_mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return real_test_set(real_mnist_dir)


@pytest.mark.parametrize("style", list(STYLES))
def test_style_accuracy(style: str, test_set: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = test_set
    acc, refused = accuracy(images, labels, STYLES[style], count=COUNT, seed=1)
    assert acc >= THRESHOLD[style], f"{style}: {acc:.3f} ({refused} refused)"
