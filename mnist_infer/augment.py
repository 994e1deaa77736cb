"""On-the-fly data augmentation: affine moves, elastic bends, stroke width and low resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

_SIDE = 28
_GRID = 4  # elastic displacements are drawn on a 4x4 grid and interpolated up


def _upsampler(n: int, side: int) -> NDArray[np.float32]:
    """(side, n) matrix that linearly interpolates n grid values to side pixels."""
    t = np.linspace(0, n - 1, side, dtype=np.float32)
    i = np.minimum(t.astype(np.intp), n - 2)
    f = t - i
    u = np.zeros((side, n), np.float32)
    u[np.arange(side), i] = 1 - f
    u[np.arange(side), i + 1] += f
    return u


_U = _upsampler(_GRID, _SIDE)
_YY, _XX = np.mgrid[0:_SIDE, 0:_SIDE].astype(np.float32) - (_SIDE - 1) / 2


def augment(
    x: NDArray,
    rng: np.random.Generator,
    *,
    rotate: float = 8.0,
    scale: float = 0.06,
    shift: float = 1.5,
    elastic: float = 0.8,
    shear: float = 0.0,
) -> NDArray[np.float32]:
    """Randomly rotated (degrees), scaled, shifted (pixels), sheared and elastically bent copies.

    shear is the largest slant, as horizontal pixels per pixel of height (0.3 is about 17°).
    x holds flattened 28x28 images (n, 784) in any numeric dtype; the result is float32 in the
    same value range, sampled bilinearly with black outside the frame.
    """
    n = x.shape[0]
    f32 = np.float32
    th = np.deg2rad(rng.uniform(-rotate, rotate, (n,))).astype(f32)
    s = rng.uniform(1 - scale, 1 + scale, (n,)).astype(f32)
    d = rng.uniform(-shift, shift, (n, 2, 1, 1)).astype(f32)
    c = (np.cos(th) / s)[:, None, None]
    si = (np.sin(th) / s)[:, None, None]
    # Inverse mapping: for each output pixel, where to read in the source (+1 for the padding).
    X = _XX - d[:, 0]
    Y = _YY - d[:, 1]
    mid = f32((_SIDE - 1) / 2 + 1)
    sx = c * X + si * Y + mid
    sy = c * Y - si * X + mid
    if shear:
        sx += rng.uniform(-shear, shear, (n, 1, 1)).astype(f32) * _YY
    if elastic:
        g = rng.normal(0, elastic, (n, 2, _GRID, _GRID)).astype(f32)
        sx += _U @ g[:, 0] @ _U.T
        sy += _U @ g[:, 1] @ _U.T
    np.clip(sx, 0, _SIDE + 0.999, out=sx)
    np.clip(sy, 0, _SIDE + 0.999, out=sy)
    fx, sx = np.modf(sx)  # float32 parts: the index's int type would promote to float64
    fy, sy = np.modf(sy)
    x0 = sx.astype(np.intp)
    y0 = sy.astype(np.intp)
    w = _SIDE + 2
    pad = np.zeros((n, w, w), f32)
    pad[:, 1:-1, 1:-1] = x.reshape(n, _SIDE, _SIDE)
    flat = pad.reshape(-1)
    i = np.arange(n)[:, None, None] * (w * w) + y0 * w + x0
    a, b, cc, dd = flat[i], flat[i + 1], flat[i + w], flat[i + w + 1]
    top = a + (b - a) * fx
    bot = cc + (dd - cc) * fx
    return (top + (bot - top) * fy).reshape(n, _SIDE * _SIDE)


def _grow(a: NDArray[np.float32], op: np.ufunc, cross: bool) -> NDArray[np.float32]:
    """3x3 (or plus-shaped) maximum or minimum filter of (n, 28, 28) images, frame kept."""
    r = a.copy()
    op(r[:, 1:], a[:, :-1], out=r[:, 1:])
    op(r[:, :-1], a[:, 1:], out=r[:, :-1])
    c = (a if cross else r).copy()
    src = a if cross else r
    op(c[:, :, 1:], src[:, :, :-1], out=c[:, :, 1:])
    op(c[:, :, :-1], src[:, :, 1:], out=c[:, :, :-1])
    if cross:
        op(c, r, out=c)
    return c


def stroke_width(
    x: NDArray, rng: np.random.Generator, *, thin: float = 0.6, thick: float = 1.0
) -> NDArray[np.float32]:
    """Copies of x (n, 784) with strokes randomly thinned or thickened.

    Each image is blended with its grey-level erosion (plus-shaped, by up to `thin`) or its
    3x3 dilation (by up to `thick`, whose whole step widens a stroke by 2 pixels); a third of
    the images stay as they are.
    """
    n = x.shape[0]
    a = np.asarray(x, np.float32).reshape(n, _SIDE, _SIDE)
    kind = rng.integers(0, 3, n)
    amount = rng.uniform(0, 1, (n,)).astype(np.float32)
    out = a.copy()
    for k, op, cross, top in ((1, np.minimum, True, thin), (2, np.maximum, False, thick)):
        sel = np.flatnonzero(kind == k)
        if sel.size and top:
            moved = _grow(a[sel], op, cross)
            w = (amount[sel] * np.float32(top))[:, None, None]
            out[sel] += w * (moved - a[sel])
    return out.reshape(n, _SIDE * _SIDE)


def _area(n: int, side: int) -> NDArray[np.float32]:
    """(n, side) matrix averaging side pixels down to n (overlapping cells at the edges)."""
    edges = np.linspace(0, side, n + 1)
    m = np.zeros((n, side), np.float32)
    for i in range(n):
        for j in range(side):
            m[i, j] = max(0.0, min(edges[i + 1], j + 1) - max(edges[i], j))
    return m / m.sum(axis=1, keepdims=True)


# Frame sides that hold a digit 7 to 14 pixels tall (the digit is 20 of MNIST's 28).
LOW_SIDES = (10, 11, 12, 14, 17, 20)
_LOW = {k: (_upsampler(k, _SIDE), _area(k, _SIDE)) for k in LOW_SIDES}


def low_resolution(x: NDArray, rng: np.random.Generator, *, p: float = 0.25) -> NDArray[np.float32]:
    """Copies of x (n, 784) where a fraction p is reduced to 10 to 20 pixels a side and back.

    This is what a tiny scan looks like once predict has blown it up to MNIST's size: blurred,
    and rescaled so that its strongest ink is as strong as before (as predict does).
    """
    n = x.shape[0]
    out = np.array(x, np.float32).reshape(n, _SIDE, _SIDE)
    low = rng.uniform(0, 1, n) < p
    side = rng.integers(0, len(LOW_SIDES), n)
    for k, s in enumerate(LOW_SIDES):
        sel = np.flatnonzero(low & (side == k))
        if sel.size:
            up, down = _LOW[s]
            before = out[sel].max(axis=(1, 2), keepdims=True)
            small = up @ (down @ out[sel] @ down.T) @ up.T
            after = small.max(axis=(1, 2), keepdims=True)
            out[sel] = small * (before / np.maximum(after, np.float32(1e-6)))
    return out.reshape(n, _SIDE * _SIDE)
