"""Drawing tools for generated pictures: pen strokes on a canvas, and MNIST's framing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from mnist_infer.preprocess import _frame

if TYPE_CHECKING:
    from numpy.typing import NDArray

    F = NDArray[np.float32]

CANVAS = 64  # drawings are made this large, then reduced (which antialiases them)
SIDE = 28
Rng = np.random.Generator
Strokes = Sequence[Any]  # polylines: sequences of (x, y) points or (k, 2) arrays


def frame(ink: NDArray[Any]) -> F:
    """A drawing (ink >= 0, any size) in MNIST's form: 28x28 float32 in [0, 1]."""
    a = np.asarray(ink, np.float32)
    top = float(a.max()) if a.size else 0.0
    if top <= 0:
        return np.zeros((SIDE, SIDE), np.float32)
    a = a * np.float32(1 / top)
    on = a > 0.1
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    crop = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _frame(np.ascontiguousarray(crop)).astype(np.float32) * np.float32(1 / 255)


def draw(strokes: Strokes, width: float, size: int = CANVAS, swell: float = 0.0) -> F:
    """Polylines in canvas pixels drawn with a round pen `width` pixels wide (ink in [0, 1]).

    With swell > 0 the pen's width changes along each stroke (by up to that share), as a
    pen pressed harder and softer does.
    """
    img = Image.new("L", (size, size))
    d = ImageDraw.Draw(img)
    for s in strokes:
        pts = [(float(x), float(y)) for x, y in s]
        n = len(pts)
        if swell:
            widths = [
                width * (1 + swell * math.sin(3 * k / max(n - 1, 1) + width)) for k in range(n)
            ]
            for k in range(n - 1):
                d.line([pts[k], pts[k + 1]], fill=255, width=max(1, round(widths[k])))
        else:
            widths = [width] * n
            if n > 1:
                d.line(pts, fill=255, width=max(1, round(width)), joint="curve")
        ends = range(n) if swell else (0, n - 1)
        for k in ends:  # round ends (and joints, where the width changes)
            x, y = pts[k]
            r = max(1, round(widths[k])) / 2
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img, np.float32) * np.float32(1 / 255)


def smooth(points: NDArray[Any], times: int = 2) -> F:
    """A polyline with its corners cut (Chaikin), as a quick hand rounds them; ends kept."""
    p = np.asarray(points, np.float32).reshape(-1, 2)
    for _ in range(times):
        if len(p) < 3:
            break
        q = np.float32(0.75) * p[:-1] + np.float32(0.25) * p[1:]
        r = np.float32(0.25) * p[:-1] + np.float32(0.75) * p[1:]
        p = np.concatenate([p[:1], np.stack([q, r], axis=1).reshape(-1, 2), p[-1:]])
    return p


def bezier(ctrl: NDArray[Any], n: int = 16) -> F:
    """Points along the cubic Bézier curve with control points ctrl (4, 2)."""
    c = np.asarray(ctrl, np.float32)
    t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    u = 1 - t
    return u**3 * c[0] + 3 * u**2 * t * c[1] + 3 * u * t**2 * c[2] + t**3 * c[3]


def fit(strokes: Strokes, pad: float, size: int = CANVAS) -> list[F]:
    """The strokes moved and scaled (keeping their shape) to fill the canvas inside pad."""
    arrays = [np.asarray(s, np.float32).reshape(-1, 2) for s in strokes]
    allp = np.concatenate(arrays)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    span = float(max(hi - lo)) or 1.0
    k = (size - 2 * pad) / span
    mid = (lo + hi) / 2
    return [(a - mid) * k + size / 2 for a in arrays]


def distort(
    strokes: Strokes,
    rng: Rng,
    *,
    jitter: float = 0.03,
    rotate: float = 12.0,
    shear: float = 0.3,
    aspect: tuple[float, float] = (0.7, 1.1),
) -> list[F]:
    """Strokes (unit box) jittered point by point, narrowed or widened, slanted and rotated."""
    th = math.radians(rng.uniform(-rotate, rotate))
    sh = rng.uniform(-shear, shear)
    ax = rng.uniform(*aspect)
    c, s = math.cos(th), math.sin(th)
    m = np.array([[c, -s], [s, c]], np.float32) @ np.array([[ax, -sh], [0, 1]], np.float32)
    out: list[F] = []
    for st in strokes:
        p = np.asarray(st, np.float32).reshape(-1, 2)
        p = p + rng.normal(0, jitter, p.shape).astype(np.float32)
        out.append(((p - np.float32(0.5)) @ m.T).astype(np.float32))
    return out


def pen(rng: Rng, lo: float = 0.08, hi: float = 0.2) -> float:
    """A pen width as a share of the drawing's longer side (MNIST's strokes are about 0.12)."""
    return float(rng.uniform(lo, hi))


def sketch(strokes: Strokes, rng: Rng, lo: float = 0.08, hi: float = 0.2) -> F:
    """Strokes fitted to the canvas and drawn with a random pen, whose width now and then
    swells and thins along the stroke."""
    share = pen(rng, lo, hi)
    inner = CANVAS / (1 + 2 * share)  # the pen must stay on the canvas
    w = share * inner
    few = sum(len(s) for s in strokes) < 60  # drawn segment by segment when it swells
    swell = float(rng.uniform(0.2, 0.5)) if few and rng.random() < 0.4 else 0.0
    return draw(fit(strokes, (CANVAS - inner) / 2 + 1 + w * swell), w, swell=swell)
