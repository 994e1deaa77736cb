"""Generated images that are not digits, in MNIST's form, for outlier exposure.

Every kind is a small function making one 28x28 picture from a random generator (the
digit-based kinds also take MNIST digits to cut up or pair); `frame` puts a drawing in
MNIST's form (white ink on black, the ink's longer side 20 px, centred by its centre of mass
in 28x28), and `generate` mixes the kinds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_infer.letters import LETTERS
from mnist_infer.strokes import (
    CANVAS,
    SIDE,
    Rng,
    bezier,
    distort,
    draw,
    fit,
    frame,
    sketch,
    smooth,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

    F = NDArray[np.float32]

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_SIZE = 44
# Characters drawn from fonts: letters and symbols that do not look like a digit.
GLYPHS = "ACEFHKLMNRTUVWXYcefkmnrtuvwxy#%&*+=<>?@~^"
# For fonts that have them (DejaVu): more letters and signs that are no digit, from Greek,
# Cyrillic, arrows, mathematics and pictographs (lookalikes of digits left out: omicron,
# theta, iota, sigma, delta, zeta; Cyrillic ze, che, be, ve, soft sign, e; infinity,
# integral; circles).
GLYPHS_WIDE = (
    GLYPHS
    + "ÀÂÄÆÇÈÉÊËÑÙÛÜÝçèéêëñùûüý"
    + "ΓΔΛΞΠΣΦΨΩαγηκλμνξπτυφχψω"
    + "ГИЙКМНПХЦШЩЫгийкмнпхцщы"
    + "€¢±×÷≠≈≤≥∇∏∠∧∨∩∪⊂⊃∴∵∝"  # noqa: RUF001
    + "←↑↓↔↕↖↗↘↙⇐⇑⇓⇔"
    + "■□▲△▼▽◆◇☆♦☀☁☂☎☑☒✂✈✉✎✏✔✕✖✚✜✢✦✧"
)


# --- kinds drawn from nothing ----------------------------------------------------------------


def framed(kind: Callable[[Rng], NDArray[Any]]) -> Callable[[Rng], F]:
    """The kind with its drawing put in MNIST's form."""

    @functools.wraps(kind)
    def wrapper(rng: Rng) -> F:
        return frame(kind(rng))

    return wrapper


@framed
def letter(rng: Rng) -> F:
    """A handwriting-like letter from its stroke skeleton (see letters.py), jittered, its
    corners now and then rounded as a quick hand rounds them."""
    name = sorted(LETTERS)[int(rng.integers(len(LETTERS)))]
    strokes = distort(LETTERS[name], rng)
    if rng.random() < 0.4:
        strokes = [smooth(s) for s in strokes]
    return sketch(strokes, rng)


@functools.cache
def fonts() -> tuple[tuple[Any, str], ...]:
    """(font, characters it can draw) for the DejaVu fonts present and Pillow's own font."""
    found: list[tuple[Any, str]] = []
    if FONT_DIR.is_dir():
        for p in sorted(FONT_DIR.glob("DejaVu*.ttf")):
            try:
                font = ImageFont.truetype(str(p), FONT_SIZE)
            except OSError:
                continue
            found.append((font, drawable(font, GLYPHS_WIDE)))
    try:
        found.append((ImageFont.load_default(FONT_SIZE), GLYPHS))
    except (OSError, ImportError):  # no FreeType: Pillow's small bitmap font
        found.append((ImageFont.load_default(), GLYPHS))
    return tuple(found)


def drawable(font: Any, chars: str) -> str:
    """The characters the font draws itself, not as its box for a missing character."""

    def pixels(ch: str) -> bytes:
        img = Image.new("L", (2 * FONT_SIZE, 2 * FONT_SIZE))
        ImageDraw.Draw(img).text((4, 4), ch, fill=255, font=font)
        return img.tobytes()

    missing = pixels("\U0010fffd")
    return "".join(c for c in chars if pixels(c) != missing)


@framed
def glyph(rng: Rng) -> F:
    """A letter or symbol from a font on this machine, thickened, slanted and rotated."""
    font, chars = fonts()[int(rng.integers(len(fonts())))]
    ch = chars[int(rng.integers(len(chars)))]
    size = 2 * FONT_SIZE
    img = Image.new("L", (size, size))
    bold = int(rng.integers(0, 3)) if isinstance(font, ImageFont.FreeTypeFont) else 0
    ImageDraw.Draw(img).text(
        (size / 2, size / 2), ch, fill=255, font=font, anchor="mm", stroke_width=bold
    )
    th = math.radians(rng.uniform(-12, 12))
    sh = rng.uniform(-0.3, 0.3)
    c, s = math.cos(th), math.sin(th)
    a, b, d, e = c, s + sh, -s, c
    mid = size / 2
    coeffs = (a, b, mid - a * mid - b * mid, d, e, mid - d * mid - e * mid)
    img = img.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32) * np.float32(1 / 255)


def _walk(rng: Rng, steps: int, turn: float) -> F:
    """A random walk whose direction turns smoothly (a pen moved about)."""
    ang = np.cumsum(rng.normal(0, turn, steps)) + rng.uniform(0, 2 * np.pi)
    return np.cumsum(np.stack([np.cos(ang), np.sin(ang)], axis=1), axis=0).astype(np.float32)


@framed
def scribble(rng: Rng) -> F:
    """A scribble: a pen wandering in loops, or a chain of random curves, once or twice."""
    strokes = []
    for _ in range(1 if rng.random() < 0.7 else 2):
        if rng.random() < 0.5:
            strokes.append(_walk(rng, int(rng.integers(20, 70)), rng.uniform(0.3, 0.9)))
        else:
            p, chain = rng.uniform(0, 1, (1, 2)), []
            for _ in range(int(rng.integers(2, 7))):
                ctrl = np.vstack([p, rng.uniform(0, 1, (3, 2))])
                chain.append(bezier(ctrl))
                p = ctrl[-1:]
            strokes.append(np.concatenate(chain))
    return sketch(strokes, rng, 0.04, 0.12)


@framed
def doodle(rng: Rng) -> F:
    """Two to four short curved strokes, apart or crossing."""
    strokes = [bezier(rng.uniform(0, 1, (4, 2))) for _ in range(int(rng.integers(2, 5)))]
    return sketch(strokes, rng, 0.05, 0.14)


@framed
def cross(rng: Rng) -> F:
    """An x or a + with uneven arms."""
    th = rng.uniform(0, np.pi)
    gap = rng.uniform(np.pi / 3, np.pi / 2)
    strokes = []
    for a in (th, th + gap):
        r1, r2 = rng.uniform(0.6, 1.0, 2)
        strokes.append([(-r1 * np.cos(a), -r1 * np.sin(a)), (r2 * np.cos(a), r2 * np.sin(a))])
    return sketch(distort(strokes, rng, jitter=0.02, rotate=0, aspect=(0.8, 1.2)), rng)


@framed
def tick(rng: Rng) -> F:
    """A tick mark: a short stroke down, a long one up."""
    short = rng.uniform(0.25, 0.45)
    tick_ = [(0.0, 1.0 - short), (0.3, 1.0), (1.0, rng.uniform(0.0, 0.3))]
    flip = rng.random() < 0.1  # the odd left-hander's mirrored tick
    pts = [(1 - x, y) if flip else (x, y) for x, y in tick_]
    return sketch(distort([pts], rng, jitter=0.03, rotate=15, aspect=(0.8, 1.3)), rng)


@framed
def arrow(rng: Rng) -> F:
    """A straight or bent arrow pointing anywhere but straight up or down."""
    th = rng.uniform(-1.1, 1.1) + (np.pi if rng.random() < 0.5 else 0)
    length = 1.0
    tip = np.array([np.cos(th), np.sin(th)]) * length
    shaft = [(0.0, 0.0), (tip[0] / 2, tip[1] / 2 + rng.normal(0, 0.08)), tuple(tip)]
    head = rng.uniform(0.2, 0.4)
    wings = []
    for side in (-1, 1):
        a = th + np.pi + side * rng.uniform(0.4, 0.7)
        wings.append([tuple(tip), (tip[0] + head * np.cos(a), tip[1] + head * np.sin(a))])
    return sketch([shaft, *wings], rng, 0.04, 0.12)


@framed
def hatching(rng: Rng) -> F:
    """Parallel strokes, sometimes crossed by a second set."""
    strokes = []
    for _ in range(1 if rng.random() < 0.6 else 2):
        th = rng.uniform(0, np.pi)
        n = int(rng.integers(3, 8))
        u, v = np.array([np.cos(th), np.sin(th)]), np.array([-np.sin(th), np.cos(th)])
        for k in np.linspace(-1, 1, n):
            a, b = rng.uniform(0.7, 1.0, 2)
            mid = v * k + rng.normal(0, 0.05, 2)
            strokes.append([tuple(mid - a * u), tuple(mid + b * u)])
    return sketch(strokes, rng, 0.03, 0.08)


@framed
def star(rng: Rng) -> F:
    """A five- to seven-pointed star in one stroke, or an asterisk."""
    n = int(rng.integers(5, 8))
    rot = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:
        k = 2 if n != 6 else 1
        angles = rot + 2 * np.pi * k * np.arange(n + 1) / n
        pts = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        if k == 1:  # a six-pointed outline: alternate inner and outer points
            angles = rot + np.pi * np.arange(2 * n + 1) / n
            r = np.where(np.arange(2 * n + 1) % 2, 0.45, 1.0)
            pts = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)
        strokes: list[Any] = [pts + rng.normal(0, 0.04, pts.shape)]
    else:
        m = int(rng.integers(3, 5))
        strokes = []
        for j in range(m):
            a = rot + np.pi * j / m + rng.normal(0, 0.08)
            strokes.append([(-np.cos(a), -np.sin(a)), (np.cos(a), np.sin(a))])
    return sketch(strokes, rng, 0.04, 0.12)


@framed
def dots(rng: Rng) -> F:
    """One to seven dots (a single dot, blown up, is a round blob)."""
    n = int(rng.integers(1, 8))
    r = rng.uniform(3, 7)
    img = Image.new("L", (CANVAS, CANVAS))
    d = ImageDraw.Draw(img)
    for x, y in rng.uniform(8, CANVAS - 8, (n, 2)):
        rr = r * rng.uniform(0.7, 1.3)
        d.ellipse((x - rr, y - rr * rng.uniform(0.7, 1.3), x + rr, y + rr), fill=255)
    return np.asarray(img, np.float32) * np.float32(1 / 255)


@framed
def blob(rng: Rng) -> F:
    """A filled shape with a wobbly outline."""
    k = np.arange(3)
    amp, phase = rng.uniform(0, 0.25, 3) / (k + 1), rng.uniform(0, 2 * np.pi, 3)
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    r = 1 + (amp[:, None] * np.sin((k[:, None] + 2) * t + phase[:, None])).sum(axis=0)
    ax = rng.uniform(0.5, 1.0)
    pts = np.stack([ax * r * np.cos(t), r * np.sin(t)], axis=1)
    (p,) = fit([pts], 5)
    img = Image.new("L", (CANVAS, CANVAS))
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in p], fill=255)
    return np.asarray(img, np.float32) * np.float32(1 / 255)


@framed
def line(rng: Rng) -> F:
    """A line, dash or underline, never near upright (that is a 1), now and then wavy."""
    th = rng.uniform(-0.7, 0.7)
    n = 12
    t = np.linspace(-1, 1, n)
    wave = rng.uniform(0, 0.08) * np.sin(t * rng.uniform(2, 9) + rng.uniform(0, 6))
    pts = np.stack([t * np.cos(th) - wave * np.sin(th), t * np.sin(th) + wave * np.cos(th)], 1)
    # The pen is measured against the whole canvas here: a line's height is mostly pen.
    share = rng.uniform(0.03, 0.08)
    (p,) = fit([pts], CANVAS * share + 1)
    return draw([p], CANVAS * share)


@framed
def noise(rng: Rng) -> F:
    """Noise: grains, smooth clouds or clouds cut into patches."""
    kind = int(rng.integers(3))
    if kind == 0:
        grains = rng.random((SIDE, SIDE), np.float32)
        return grains * (rng.random((SIDE, SIDE)) < rng.uniform(0.1, 0.6))
    cells = int(rng.integers(3, 9))
    low = Image.fromarray(rng.random((cells, cells)).astype(np.float32), "F")
    smooth = np.asarray(low.resize((SIDE, SIDE), Image.Resampling.BICUBIC), np.float32)
    if kind == 1:
        return np.clip(smooth, 0, None)
    return (smooth > np.quantile(smooth, rng.uniform(0.5, 0.85))).astype(np.float32)


# --- kinds cut from digits -------------------------------------------------------------------


def _ink_box(d: NDArray[Any]) -> NDArray[Any]:
    on = d > 0.1 * d.max()
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    return d[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def partial_digit(digits: NDArray[np.uint8], rng: Rng) -> F:
    """Part of a digit: what is left on one side of a random cut (30-65% of its ink).

    A part drawn out along one direction (a lone stroke reads as a 1) is cut again.
    """
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    for _ in range(20):
        d = digits[int(rng.integers(len(digits)))].reshape(SIDE, SIDE).astype(np.float32)
        total = d.sum()
        if total <= 0:
            continue
        cy, cx = (d * yy).sum() / total, (d * xx).sum() / total
        th = rng.uniform(0, 2 * np.pi)
        side = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th) > rng.uniform(-3, 3)
        part = d * side
        if not 0.3 <= part.sum() / total <= 0.65:
            continue
        if elongation(part) < 2.5:
            return frame(part)
    return frame(part)


def elongation(ink: NDArray[Any]) -> float:
    """How drawn out the ink is: the ratio of its spread along its long and short axes."""
    yy, xx = np.mgrid[0 : ink.shape[0], 0 : ink.shape[1]]
    w = ink / ink.sum()
    my, mx = (w * yy).sum(), (w * xx).sum()
    cyy = (w * (yy - my) ** 2).sum()
    cxx = (w * (xx - mx) ** 2).sum()
    cxy = (w * (yy - my) * (xx - mx)).sum()
    lo, hi = np.linalg.eigvalsh(np.array([[cyy, cxy], [cxy, cxx]]))
    return float(np.sqrt(hi / max(lo, 1e-6)))


def digit_pair(digits: NDArray[np.uint8], rng: Rng) -> F:
    """Two digits side by side, framed as they are or squeezed into a square."""
    a, b = (
        _ink_box(digits[int(i)].reshape(SIDE, SIDE).astype(np.float32))
        for i in rng.integers(len(digits), size=2)
    )
    h = max(a.shape[0], b.shape[0])
    gap = int(rng.integers(0, 4))
    pair = np.zeros((h, a.shape[1] + gap + b.shape[1]), np.float32)
    pair[(h - a.shape[0]) // 2 :][: a.shape[0], : a.shape[1]] = a
    pair[(h - b.shape[0]) // 2 :][: b.shape[0], a.shape[1] + gap :] = b
    if rng.random() < 0.5:
        img = Image.fromarray(pair, "F").resize((h, h), Image.Resampling.BILINEAR)
        pair = np.asarray(img, np.float32)
    return frame(pair)


# --- the mix ------------------------------------------------------------------------------

Kind = Callable[[Rng], "F"]
KINDS: dict[str, Kind] = {
    "letter": letter,
    "glyph": glyph,
    "scribble": scribble,
    "doodle": doodle,
    "cross": cross,
    "tick": tick,
    "arrow": arrow,
    "hatching": hatching,
    "star": star,
    "dots": dots,
    "blob": blob,
    "line": line,
    "noise": noise,
}
DIGIT_KINDS = {"partial_digit": partial_digit, "digit_pair": digit_pair}
# How often each kind is drawn (relative): letters and symbols first, as people write them.
WEIGHTS = {
    "letter": 24,
    "glyph": 24,
    "scribble": 10,
    "doodle": 5,
    "cross": 4,
    "tick": 4,
    "arrow": 3,
    "hatching": 3,
    "star": 3,
    "dots": 2,
    "blob": 2,
    "line": 3,
    "noise": 3,
    "partial_digit": 3,
    "digit_pair": 6,
}


def generate(
    n: int,
    rng: Rng,
    digits: NDArray[np.uint8] | None = None,
    kinds: Sequence[str] | None = None,
) -> F:
    """n non-digits (n, 784) float32 in [0, 1], kinds mixed by WEIGHTS.

    The digit-based kinds need `digits` (flattened MNIST digits, uint8) and are left out
    without them.
    """
    names = [k for k in (kinds or WEIGHTS) if k in KINDS or digits is not None]
    if not names:
        raise ValueError("no kind of non-digit to generate (the digit kinds need digits)")
    p = np.array([WEIGHTS.get(k, 1) for k in names], np.float64)
    pick = rng.choice(len(names), size=n, p=p / p.sum())
    out = np.empty((n, SIDE * SIDE), np.float32)
    for i, k in enumerate(pick):
        name = names[k]
        img = KINDS[name](rng) if name in KINDS else DIGIT_KINDS[name](digits, rng)  # type: ignore[arg-type]
        out[i] = img.reshape(-1)
    return out
