"""A development set of things that are not digits, handed over as files, as people would.

Generated at run time with code of its own (not the training generator's): letters from
Bézier skeletons drawn with a pen whose width varies, characters that training never drew
(Cyrillic letters, signs and pictographs from the DejaVu fonts), scribbles, ticks, crosses,
arrows, stars, hatching and blots; dark ink on light paper, as PNG or as a JPEG photo with
uneven light. Predict's preprocessing reads each file back.

`python tests/nondigits.py [WEIGHTS...] [--count N]` prints, per kind, the share each
weights file's not-a-digit rule catches (default: `default`).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

F = NDArray[np.float32]
Draw = Callable[[np.random.Generator], F]  # ink in [0, 1] on a square canvas
SIDE = 160
FONTS = Path("/usr/share/fonts/truetype/dejavu")
UNSEEN = "ЖФЯЛДжшЪБЮ¥¤§¶♥♣♠★✓✗→⇒☺⌘∑√"  # none of them in training's font glyphs


def _bezier(p: NDArray[np.float64], n: int = 24) -> NDArray[np.float64]:
    """Points along the cubic Bézier curve with control points p (4, 2)."""
    t = np.linspace(0, 1, n)[:, None]
    return (
        (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    )


def _pen(strokes: list[NDArray[np.float64]], rng: np.random.Generator) -> F:
    """Strokes (unit box) drawn as chains of discs whose width swells and thins."""
    img = Image.new("L", (SIDE, SIDE))
    d = ImageDraw.Draw(img)
    scale = SIDE * rng.uniform(0.45, 0.7)
    off = rng.uniform(0.15, 0.85 - scale / SIDE, 2) * SIDE
    base = rng.uniform(0.035, 0.09) * scale
    for s in strokes:
        pts = s * scale + off
        # resample densely so the discs overlap
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        t = np.concatenate([[0], np.cumsum(seg)])
        fine = np.arange(0, t[-1] + 1e-9, 0.5)
        xs, ys = np.interp(fine, t, pts[:, 0]), np.interp(fine, t, pts[:, 1])
        press = 1 + 0.35 * np.sin(fine / max(t[-1], 1) * np.pi * rng.uniform(1, 3))
        for x, y, p in zip(xs, ys, press, strict=True):
            r = base * p / 2
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img, np.float32) / 255


def _skew(strokes: list[NDArray[np.float64]], rng: np.random.Generator) -> list:
    """Strokes slanted, wobbled and squeezed a little."""
    m = np.array([[rng.uniform(0.75, 1.15), rng.uniform(-0.25, 0.25)], [0, 1]])
    return [(s - 0.5) @ m.T + 0.5 + rng.normal(0, 0.012, s.shape) for s in strokes]


def _b(*pts: tuple[float, float]) -> NDArray[np.float64]:
    return _bezier(np.array(pts, np.float64))


def _l(*pts: tuple[float, float]) -> NDArray[np.float64]:
    return np.array(pts, np.float64)


# Letters written with curves where the training skeletons have straight lines, and some
# letters training has not got at all (its list: letters.py).
HAND = {
    "A": [
        _b((0, 1), (0.3, 0.4), (0.4, 0), (0.5, 0)),
        _b((0.5, 0), (0.6, 0), (0.8, 0.5), (1, 1)),
        _l((0.2, 0.62), (0.82, 0.58)),
    ],
    "K": [
        _l((0.1, 0), (0.1, 1)),
        _b((0.9, 0), (0.5, 0.3), (0.2, 0.5), (0.1, 0.55)),
        _b((0.25, 0.45), (0.5, 0.6), (0.7, 0.9), (0.95, 1)),
    ],
    "H": [
        _b((0.1, 0), (0.05, 0.4), (0.15, 0.7), (0.1, 1)),
        _l((0.9, 0), (0.88, 1)),
        _b((0.1, 0.5), (0.4, 0.45), (0.6, 0.55), (0.9, 0.5)),
    ],
    "M": [
        _b((0, 1), (0.05, 0.5), (0.1, 0.1), (0.15, 0)),
        _l((0.15, 0), (0.5, 0.6), (0.85, 0)),
        _b((0.85, 0), (0.9, 0.3), (0.95, 0.7), (1, 1)),
    ],
    "W": [
        _b((0, 0), (0.1, 0.6), (0.2, 1), (0.3, 1)),
        _b((0.3, 1), (0.4, 0.8), (0.45, 0.4), (0.5, 0.3)),
        _b((0.5, 0.3), (0.6, 0.6), (0.65, 1), (0.75, 1)),
        _b((0.75, 1), (0.85, 0.8), (0.95, 0.3), (1, 0)),
    ],
    "X": [_b((0, 0), (0.4, 0.3), (0.6, 0.7), (1, 1)), _b((1, 0), (0.6, 0.35), (0.4, 0.6), (0, 1))],
    "E": [
        _b((0.9, 0.05), (0.5, -0.05), (0.1, 0), (0.1, 0.3)),
        _b((0.1, 0.3), (0.1, 0.7), (0.1, 1), (0.9, 0.95)),
        _l((0.1, 0.5), (0.65, 0.48)),
    ],
    "R": [
        _l((0.1, 1), (0.1, 0)),
        _b((0.1, 0), (0.9, -0.1), (0.9, 0.55), (0.1, 0.5)),
        _b((0.35, 0.5), (0.6, 0.7), (0.75, 0.9), (0.95, 1)),
    ],
    "Y": [_b((0, 0), (0.2, 0.3), (0.4, 0.45), (0.5, 0.5)), _l((1, 0), (0.5, 0.5), (0.45, 1))],
    "k": [
        _l((0.15, 0), (0.15, 1)),
        _b((0.8, 0.35), (0.5, 0.5), (0.3, 0.6), (0.15, 0.7)),
        _b((0.3, 0.62), (0.5, 0.75), (0.7, 0.95), (0.9, 1)),
    ],
    "x": [
        _b((0.1, 0.35), (0.4, 0.6), (0.6, 0.8), (0.9, 1)),
        _b((0.9, 0.35), (0.6, 0.6), (0.4, 0.8), (0.1, 1)),
    ],
    "w": [
        _b((0, 0.35), (0.1, 0.8), (0.2, 1), (0.3, 1)),
        _b((0.3, 1), (0.4, 0.8), (0.45, 0.5), (0.5, 0.45)),
        _b((0.5, 0.45), (0.6, 0.7), (0.65, 1), (0.75, 1)),
        _b((0.75, 1), (0.85, 0.8), (0.95, 0.5), (1, 0.35)),
    ],
    "&": [
        _b((0.8, 1), (0.0, 0.3), (0.2, -0.05), (0.5, 0.1)),
        _b((0.5, 0.1), (0.8, 0.3), (0.0, 0.6), (0.2, 0.9)),
        _b((0.2, 0.9), (0.4, 1.1), (0.8, 0.8), (0.9, 0.55)),
    ],
    "#": [
        _l((0.35, 0), (0.25, 1)),
        _l((0.75, 0), (0.65, 1)),
        _l((0, 0.33), (1, 0.3)),
        _l((0, 0.7), (1, 0.67)),
    ],
    "Ж": [
        _l((0.5, 0), (0.5, 1)),
        _b((0.05, 0), (0.3, 0.3), (0.3, 0.5), (0.5, 0.5)),
        _b((0.95, 0), (0.7, 0.3), (0.7, 0.5), (0.5, 0.5)),
        _l((0.5, 0.5), (0.05, 1)),
        _l((0.5, 0.5), (0.95, 1)),
    ],
}


def handwritten_letter(rng: np.random.Generator) -> F:
    """A letter or sign from HAND, slanted and wobbled, with a pen that swells and thins."""
    keys = sorted(HAND)
    return _pen(_skew(HAND[keys[int(rng.integers(len(keys)))]], rng), rng)


@functools.cache
def _drawable(path: Path) -> str:
    """The characters of UNSEEN that the font draws itself (not as its missing-glyph box)."""
    font = ImageFont.truetype(str(path), 48)

    def pixels(ch: str) -> bytes:
        img = Image.new("L", (120, 120))
        ImageDraw.Draw(img).text((10, 10), ch, fill=255, font=font)
        return img.tobytes()

    missing = pixels("\U0010fffd")
    return "".join(c for c in UNSEEN if pixels(c) != missing)


def unseen_character(rng: np.random.Generator) -> F:
    """A character that training never drew, from a DejaVu font (Pillow's own without them)."""
    files = sorted(FONTS.glob("DejaVu*.ttf")) if FONTS.is_dir() else []
    size = int(rng.integers(60, 110))
    if files:
        path = files[int(rng.integers(len(files)))]
        font = ImageFont.truetype(str(path), size)
        have = _drawable(path)
        ch = have[int(rng.integers(len(have)))]
    else:
        font, ch = ImageFont.load_default(size), "KXHWM&#"[int(rng.integers(7))]
    img = Image.new("L", (SIDE, SIDE))
    ImageDraw.Draw(img).text((SIDE / 2, SIDE / 2), ch, fill=255, font=font, anchor="mm")
    img = img.rotate(float(rng.uniform(-20, 20)), Image.Resampling.BICUBIC)
    return np.asarray(img, np.float32) / 255


def scribble(rng: np.random.Generator) -> F:
    """A chain of random Bézier arcs."""
    p = rng.uniform(0, 1, 2)
    strokes = []
    for _ in range(int(rng.integers(3, 8))):
        ctrl = np.vstack([p, rng.uniform(0, 1, (3, 2))])
        strokes.append(_bezier(ctrl))
        p = ctrl[-1]
    return _pen([np.concatenate(strokes)], rng)


def mark(rng: np.random.Generator) -> F:
    """A tick, a cross, an arrow, a star or hatching, drawn freehand."""
    kind = int(rng.integers(5))
    if kind == 0:  # a curved tick
        s = [
            _b((0, 0.55), (0.15, 0.7), (0.25, 0.95), (0.35, 1)),
            _b((0.35, 1), (0.5, 0.6), (0.7, 0.25), (1, 0)),
        ]
    elif kind == 1:  # a cross of two bowed strokes
        s = [
            _b((0, 0.1), (0.4, 0.5), (0.6, 0.5), (1, 0.9)),
            _b((0.1, 1), (0.4, 0.6), (0.6, 0.4), (0.9, 0)),
        ]
    elif kind == 2:  # a double-headed arrow, lying down
        y = rng.uniform(0.4, 0.6)
        s = [_l((0, y), (1, y)), _l((0.15, y - 0.15), (0, y), (0.15, y + 0.15))]
        s.append(_l((0.85, y - 0.15), (1, y), (0.85, y + 0.15)))
    elif kind == 3:  # a star of separate strokes
        a0 = rng.uniform(0, math.pi)
        s = [
            _l(
                (0.5 - 0.5 * math.cos(a), 0.5 - 0.5 * math.sin(a)),
                (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)),
            )
            for a in a0 + np.arange(4) * math.pi / 4
        ]
    else:  # a block of zigzag hatching
        n = int(rng.integers(4, 9))
        xs = np.linspace(0, 1, n)
        s = [np.stack([xs, np.where(np.arange(n) % 2, 0.1, 0.9)], axis=1)]
    return _pen(s, rng)


def blot(rng: np.random.Generator) -> F:
    """An ink blot with splashes around it."""
    img = Image.new("L", (SIDE, SIDE))
    d = ImageDraw.Draw(img)
    c = rng.uniform(0.35, 0.65, 2) * SIDE
    t = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    r = SIDE * 0.2 * (1 + 0.3 * rng.uniform(-1, 1, 30))
    d.polygon(
        [
            (float(c[0] + a * math.cos(b)), float(c[1] + a * math.sin(b)))
            for a, b in zip(r, t, strict=True)
        ],
        fill=255,
    )
    for _ in range(int(rng.integers(0, 6))):
        p = c + rng.normal(0, SIDE * 0.25, 2)
        q = rng.uniform(2, 6)
        d.ellipse((p[0] - q, p[1] - q, p[0] + q, p[1] + q), fill=255)
    return np.asarray(img, np.float32) / 255


KINDS: dict[str, Draw] = {
    "handwritten letter": handwritten_letter,
    "unseen character": unseen_character,
    "scribble": scribble,
    "mark": mark,
    "blot": blot,
}


def as_file(ink: F, rng: np.random.Generator) -> bytes:
    """Dark ink on light paper: a clean PNG, or a JPEG photo with uneven light and noise."""
    paper = rng.uniform(0.8, 0.97)
    page = paper - (paper - rng.uniform(0.05, 0.3)) * ink
    fmt = "PNG" if rng.random() < 0.5 else "JPEG"
    if fmt == "JPEG":
        yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
        page = page * (0.85 + 0.15 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)))
        page = page + rng.normal(0, 0.015, page.shape)
    img = Image.fromarray(np.clip(page * 255 + 0.5, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buf.getvalue()


def read_back(kind: Draw, count: int, seed: int) -> tuple[NDArray[np.uint8], int]:
    """`count` files of one kind read by predict's preprocessing: (digits (n, 784), refused)."""
    from mnist_infer.errors import ImageError
    from mnist_infer.image import load_digit

    rng = np.random.default_rng([seed, 28])
    out, refused = [], 0
    for i in range(count):
        try:
            d, _ = load_digit(io.BytesIO(as_file(kind(rng), rng)), f"non-digit-{i}")
        except ImageError:
            refused += 1
            continue
        out.append(d.reshape(784))
    return np.array(out, np.uint8).reshape(-1, 784), refused


def flagged(images: NDArray, weights: str | None = None) -> NDArray[np.bool_]:
    """Which images (n, 784) the weights' not-a-digit rule flags."""
    from mnist_infer.backprop import logits
    from mnist_infer.novelty import rule_from_metadata
    from mnist_infer.shipped import weights_path
    from mnist_infer.weights import load_weights, read_metadata

    path = weights_path(weights)
    params = {k: np.ascontiguousarray(v, np.float32) for k, v in load_weights(path).items()}
    rule = rule_from_metadata(read_metadata(path))
    return ~rule.is_digit(logits(params, np.asarray(images)))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="*", default=["default"], help="files or short names")
    ap.add_argument("--count", type=int, default=300, help="images per kind")
    args = ap.parse_args()
    print("| kind | " + " | ".join(f"`{w}`" for w in args.weights) + " |")
    print("| --- |" + " --- |" * len(args.weights))
    for name, kind in KINDS.items():
        images, refused = read_back(kind, args.count, seed=0)
        note = f" ({refused} refused)" if refused else ""
        cells = [f"{flagged(images, w).mean():.3f}{note}" for w in args.weights]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
