"""Random affine and elastic moves of 28x28 digits, checked against a per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_infer.augment import LOW_SIDES, augment, low_resolution, stroke_width


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


@pytest.mark.parametrize("seed", [0, 1])
def test_shear_matches_a_per_pixel_reference(seed: int) -> None:
    x = _digits(seed=seed)
    n = len(x)
    y = augment(x, np.random.default_rng(seed), rotate=0, scale=0, shift=0, elastic=0, shear=0.4)
    rng = np.random.default_rng(seed)
    rng.uniform(0, 0, n)
    rng.uniform(1, 1, n)
    rng.uniform(0, 0, (n, 2))
    k_ = rng.uniform(-0.4, 0.4, n)
    for k in range(n):
        img = x[k].reshape(28, 28)
        want = [[_bilinear(img, r, c + k_[k] * (r - 13.5)) for c in range(28)] for r in range(28)]
        np.testing.assert_allclose(y[k].reshape(28, 28), want, atol=1e-3)


def _bar(width: int) -> np.ndarray:
    x = np.zeros((1, 28, 28), np.float32)
    x[0, 4:24, 14 - width // 2 : 14 - width // 2 + width] = 255
    return x.reshape(1, 784)


def test_stroke_width_thickens_and_thins() -> None:
    x = np.repeat(_bar(3), 300, axis=0)
    y = stroke_width(x, np.random.default_rng(0))
    assert y.dtype == np.float32
    ink = y.reshape(300, 28, 28)[:, 14].sum(axis=1) / 255  # ink across the middle row
    assert ink.min() < 3 - 0.5  # some thinner (1.2 at most removed: plus-shaped, by 0.6)
    assert ink.max() > 3 + 1.5  # some thicker (up to 2 px more)
    assert np.sum(ink == 3) > 50  # a third unchanged
    assert ink.min() >= 3 - 2 * 0.6 - 1e-4
    assert ink.max() <= 5 + 1e-4
    assert y.min() >= 0
    assert y.max() <= 255


def test_stroke_width_nothing_asked_nothing_changed() -> None:
    x = _digits().astype(np.float32)
    np.testing.assert_array_equal(stroke_width(x, np.random.default_rng(0), thin=0, thick=0), x)


def test_low_resolution_blurs_a_share_and_keeps_the_strongest_ink() -> None:
    x = np.repeat(_digits(1), 400, axis=0).astype(np.float32)
    y = low_resolution(x, np.random.default_rng(0), p=0.25)
    changed = np.any(np.abs(y - x) > 1e-3, axis=1)
    assert 0.18 < changed.mean() < 0.32
    np.testing.assert_allclose(y.max(axis=1), x.max(axis=1), rtol=1e-5)
    # blurred: fewer pixels at full strength, more pixels with some ink
    assert np.all((y[changed] > 0.5).sum(1) > (x[changed] > 0.5).sum(1))
    assert len(LOW_SIDES) > 1
    np.testing.assert_array_equal(low_resolution(x, np.random.default_rng(0), p=0), x)
