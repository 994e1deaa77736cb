"""Random affine and elastic moves of 28x28 digits, checked against a per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_infer.augment import augment


def _digits(n: int = 6, seed: int = 0) -> np.ndarray:
    x = np.zeros((n, 28, 28), np.uint8)
    rng = np.random.default_rng(seed)
    for img in x:
        r, c = rng.integers(4, 16, 2)
        img[r : r + 9, c : c + 3] = rng.integers(100, 256)
        img[r : r + 3, c : c + 9] = 255
    return x.reshape(n, 784)


def _bilinear(img: np.ndarray, y: float, x: float) -> float:
    """img sampled at (y, x), black outside the frame."""

    def at(i: int, j: int) -> float:
        return float(img[i, j]) if 0 <= i < 28 and 0 <= j < 28 else 0.0

    i, j = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - i, x - j
    top = at(i, j) * (1 - fx) + at(i, j + 1) * fx
    bot = at(i + 1, j) * (1 - fx) + at(i + 1, j + 1) * fx
    return top * (1 - fy) + bot * fy


def test_output_is_float32_in_the_input_range() -> None:
    x = _digits()
    y = augment(x, np.random.default_rng(1))
    assert y.dtype == np.float32
    assert y.shape == x.shape
    assert y.min() >= 0
    assert y.max() <= 255
    assert not np.array_equal(y, x)


def test_no_move_gives_the_input() -> None:
    x = _digits()
    y = augment(x, np.random.default_rng(1), rotate=0, scale=0, shift=0, elastic=0)
    np.testing.assert_array_equal(y, x)


def test_same_generator_state_same_result() -> None:
    x = _digits()
    a = augment(x, np.random.default_rng(3))
    b = augment(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shift_matches_a_per_pixel_reference(seed: int) -> None:
    x = _digits(seed=seed)
    n = len(x)
    y = augment(x, np.random.default_rng(seed), rotate=0, scale=0, shift=3, elastic=0)
    rng = np.random.default_rng(seed)  # the same draws, in augment's order
    rng.uniform(0, 0, n)
    rng.uniform(1, 1, n)
    d = rng.uniform(-3, 3, (n, 2))
    for k in range(n):
        img = x[k].reshape(28, 28)
        want = [[_bilinear(img, r - d[k, 1], c - d[k, 0]) for c in range(28)] for r in range(28)]
        np.testing.assert_allclose(y[k].reshape(28, 28), want, atol=1e-3)
