"""On-the-fly data augmentation: small random affine moves and smooth elastic distortions."""

from __future__ import annotations

import numpy as np
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
) -> NDArray[np.float32]:
    """Randomly rotated (degrees), scaled, shifted (pixels) and elastically bent copies of x.

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
