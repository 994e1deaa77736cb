"""Drawing tools of the non-digit generator."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_infer.strokes import CANVAS, bezier, distort, draw, fit, frame, sketch, smooth


def test_draw_a_line_with_round_ends() -> None:
    img = draw([[(10, 32), (50, 32)]], 6)
    assert img.shape == (CANVAS, CANVAS)
    assert img[32, 10:51].min() == 1  # the whole stroke is inked
    rows = np.flatnonzero(img[:, 30] > 0)
    assert 5 <= len(rows) <= 7  # as wide as the pen
    assert img[32, 7] == 1  # the round cap reaches past the end
    assert img[10, 30] == 0


def test_a_swelling_pen_varies_the_width() -> None:
    pts = [(8 + 4 * k, 32) for k in range(13)]
    widths = {int((draw([pts], 8, swell=0.5)[:, x] > 0).sum()) for x in range(12, 52, 4)}
    assert len(widths) > 2
    plain = {int((draw([pts], 8)[:, x] > 0).sum()) for x in range(12, 52, 4)}
    assert len(plain) == 1


def test_smooth_cuts_corners_and_keeps_the_ends() -> None:
    corner = np.array([[0, 0], [1, 0], [1, 1]], np.float32)
    s = smooth(corner)
    np.testing.assert_array_equal(s[0], corner[0])
    np.testing.assert_array_equal(s[-1], corner[-1])
    assert not any(np.array_equal(p, corner[1]) for p in s)  # the corner point is gone
    assert len(s) > len(corner)


def test_bezier_starts_and_ends_on_its_end_points() -> None:
    c = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], np.float32)
    b = bezier(c, 9)
    np.testing.assert_allclose(b[[0, -1]], c[[0, 3]], atol=1e-6)
    assert b.shape == (9, 2)
    assert b[:, 1].max() == pytest.approx(0.75)  # a cubic's midpoint


def test_fit_fills_the_canvas_keeping_the_shape() -> None:
    (p,) = fit([np.array([[0, 0], [2, 1]], np.float32)], pad=4)
    np.testing.assert_allclose(p[:, 0], [4, CANVAS - 4])
    assert p[1, 1] - p[0, 1] == pytest.approx((CANVAS - 8) / 2)


def test_distort_is_determined_by_the_seed() -> None:
    s = [np.array([[0, 0], [1, 1]], np.float32)]
    a = distort(s, np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], distort(s, np.random.default_rng(1))[0])
    assert not np.array_equal(a[0], distort(s, np.random.default_rng(2))[0])


def test_sketch_then_frame_is_mnist_form() -> None:
    img = frame(sketch([[(0, 0), (1, 1)], [(1, 0), (0, 1)]], np.random.default_rng(3)))
    assert img.shape == (28, 28)
    assert img.max() > 0.9
    on = np.flatnonzero((img > 0).any(axis=0))
    assert on[-1] - on[0] + 1 in (20, 21, 22)
