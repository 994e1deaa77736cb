"""Development sets: MNIST test digits handed over as people hand over their own digits.

Every image is generated at run time from an MNIST test digit (nothing derived from MNIST is
stored): a page photographed on a dark or patterned table, a thin pen in JPEG, a fat marker,
tiny scans as they are and blown up, blue ballpoint on lined or squared paper.

`python tests/devsets.py [WEIGHTS...] [--count N]` prints the accuracy per style as a
Markdown table, one column per weights file or short name (default: `default`); it needs
MNIST_INFER_TEST_DATA, as the tests do.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Render = Callable[[NDArray[np.uint8], np.random.Generator], bytes]
F = NDArray[np.float32]


def _encode(a: F, fmt: str = "PNG", quality: int = 90) -> bytes:
    """A float image in [0, 1] (gray, or RGB in the last axis) as file bytes."""
    img = Image.fromarray(np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _up(digit: NDArray[np.uint8], side: int) -> F:
    """The 28x28 digit as ink strength in [0, 1], bilinearly enlarged to side x side."""
    img = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32) / 255


def _grow(m: NDArray[np.bool_], r: int) -> NDArray[np.bool_]:
    """Dilate a mask by r pixels (alternating square and plus steps: roughly a disc)."""
    for i in range(r):
        p = np.pad(m, 1)
        out = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
        if i % 2:
            out |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
        m = out
    return m


def skeleton(m: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Zhang-Suen thinning of a mask to one-pixel-wide lines."""
    m = np.pad(m, 1).astype(np.uint8)
    while True:
        changed = False
        for step in range(2):
            p = [
                m[:-2, 1:-1],
                m[:-2, 2:],
                m[1:-1, 2:],
                m[2:, 2:],
                m[2:, 1:-1],
                m[2:, :-2],
                m[1:-1, :-2],
                m[:-2, :-2],
            ]  # P2..P9 clockwise from north
            b = sum(p)
            a = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                c = p[0] * p[2] * p[4] == 0
                d = p[2] * p[4] * p[6] == 0
            else:
                c = p[0] * p[2] * p[6] == 0
                d = p[0] * p[4] * p[6] == 0
            kill = (m[1:-1, 1:-1] == 1) & (b >= 2) & (b <= 6) & (a == 1) & c & d
            if kill.any():
                m[1:-1, 1:-1][kill] = 0
                changed = True
        if not changed:
            return m[1:-1, 1:-1].astype(bool)


def _pen(digit: NDArray[np.uint8], side: int, width: float) -> F:
    """The digit redrawn with a pen `width` pixels wide, side x side, antialiased (ink 0..1)."""
    big = _up(digit, side * 2) > 0.45
    line = _grow(skeleton(big), max(0, round(width) - 1))  # at twice the size
    return np.asarray(
        Image.fromarray(line.astype(np.float32)).resize((side, side), Image.Resampling.BOX),
        np.float32,
    )


def _place(ink: F, h: int, w: int, rng: np.random.Generator) -> F:
    """ink pasted at a random spot of an h x w canvas, away from the edges."""
    out = np.zeros((h, w), np.float32)
    y = int(rng.integers(h // 10, h - ink.shape[0] - h // 10 + 1))
    x = int(rng.integers(w // 10, w - ink.shape[1] - w // 10 + 1))
    out[y : y + ink.shape[0], x : x + ink.shape[1]] = ink
    return out


def _noise(a: F, rng: np.random.Generator, sd: float) -> F:
    return a + rng.normal(0, sd, a.shape).astype(np.float32)


def thin_pen(digit: NDArray[np.uint8], rng: np.random.Generator) -> bytes:
    """About 3 px strokes on a 300 px light-grey page, JPEG quality 75."""
    ink = _place(_pen(digit, 200, float(rng.uniform(2, 4)) * 2), 300, 300, rng)
    page = 235 / 255 + (7 / 255 - 235 / 255) * ink
    return _encode(page, "JPEG", 75)


def fat_marker(digit: NDArray[np.uint8], rng: np.random.Generator) -> bytes:
    """Strokes about twice MNIST's width, PNG."""
    big = _up(digit, 280) > 0.45
    mask = _grow(big, int(rng.integers(8, 13)))  # MNIST's ~25 px strokes at this size
    ink = np.asarray(
        Image.fromarray(mask.astype(np.float32)).resize((140, 140), Image.Resampling.BOX)
    )
    page = 0.97 - 0.9 * _place(ink, 180, 180, rng)
    return _encode(page)


def _scan(digit: NDArray[np.uint8], side: int) -> F:
    """The digit's ink box (made square) area-reduced to side x side, dark ink on white."""
    ys, xs = np.nonzero(digit > 30)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    n = max(y1 - y0, x1 - x0)
    sq = np.zeros((n, n), np.float32)
    sq[(n - (y1 - y0)) // 2 :][: y1 - y0, (n - (x1 - x0)) // 2 :][:, : x1 - x0] = digit[
        y0:y1, x0:x1
    ]
    small = np.asarray(Image.fromarray(sq).resize((side, side), Image.Resampling.BOX))
    levels = np.round(small / 255 * 16) / 16  # 17 grey levels, as old scanners stored them
    return 1 - levels.astype(np.float32)


def scan(side: int, up: int = 1) -> Render:
    """side x side scans as they are (up=1) or enlarged `up` times with bilinear filtering."""

    def render(digit: NDArray[np.uint8], rng: np.random.Generator) -> bytes:
        s = _scan(digit, side)
        if up > 1:
            img = Image.fromarray(s).resize((side * up, side * up), Image.Resampling.BILINEAR)
            s = np.asarray(img, np.float32)
        return _encode(s)

    return render


def scan_photo(digit: NDArray[np.uint8], rng: np.random.Generator) -> bytes:
    """An 8x8 scan printed large on paper and photographed: blur, uneven light, noise, JPEG."""
    s = _scan(digit, 8)
    ink = 1 - np.asarray(Image.fromarray(s).resize((96, 96), Image.Resampling.BILINEAR))
    ink = _place(ink.astype(np.float32), 200, 200, rng)
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32) / 200
    light = 0.75 + 0.2 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
    page = light * (1 - 0.8 * ink)
    page = _noise(page, rng, 0.02)
    return _encode(page, "JPEG", 80)


def _table(h: int, w: int, rng: np.random.Generator) -> F:
    """A dark table, plain or patterned (wood grain or tiles)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(0, 3)
    base = float(rng.uniform(0.08, 0.3))
    if kind == 0:
        t = np.full((h, w), base, np.float32)
    elif kind == 1:  # wood grain
        f = rng.uniform(0.05, 0.15)
        t = base + 0.12 * np.sin(f * yy + 3 * np.sin(0.01 * xx)) ** 2
    else:  # tiles
        s = int(rng.integers(25, 60))
        t = base + 0.2 * (((yy // s) + (xx // s)) % 2)
    return _noise(t.astype(np.float32), rng, 0.03)


def page_on_table(digit: NDArray[np.uint8], rng: np.random.Generator) -> bytes:
    """A light page with a dark digit, slightly rotated, photographed on a table (JPEG)."""
    ph, pw = int(rng.integers(180, 240)), int(rng.integers(160, 200))
    ink = _place(_up(digit, int(rng.integers(80, 120))), ph, pw, rng)
    paper = float(rng.uniform(0.75, 0.95))
    page = paper - (paper - 0.1) * ink
    angle = float(rng.uniform(-12, 12))
    rot = Image.fromarray(page).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    mask = Image.fromarray(np.ones((ph, pw), np.float32)).rotate(
        angle, Image.Resampling.BILINEAR, expand=True
    )
    side = max(rot.size) + int(rng.integers(40, 120))
    out = _table(side, side, rng)
    y = int(rng.integers(10, side - rot.size[1] - 10))
    x = int(rng.integers(10, side - rot.size[0] - 10))
    m = np.asarray(mask, np.float32)
    region = out[y : y + rot.size[1], x : x + rot.size[0]]
    region[:] = region * (1 - m) + np.asarray(rot, np.float32) * m
    return _encode(_noise(out, rng, 0.01), "JPEG", 85)


def ballpoint(digit: NDArray[np.uint8], rng: np.random.Generator) -> bytes:
    """Blue ballpoint on lined or squared paper (JPEG)."""
    side = 300
    ink = _place(_pen(digit, 190, float(rng.uniform(3, 5)) * 2), side, side, rng)
    paper = np.ones((side, side, 3), np.float32) * np.array([0.97, 0.96, 0.92], np.float32)
    gap = int(rng.integers(20, 32))
    lines = np.zeros((side, side), np.float32)
    off = int(rng.integers(0, gap))
    lines[off::gap] = 1
    if rng.integers(0, 2):  # squared paper
        lines[:, off::gap] = 1
    line_colour = np.array([0.6, 0.75, 0.95], np.float32)
    pen = np.array([0.1, 0.15, 0.55], np.float32) * float(rng.uniform(0.6, 1.2))
    img = paper * (1 - lines[..., None]) + line_colour * lines[..., None]
    img = img * (1 - ink[..., None]) + pen * ink[..., None]
    return _encode(_noise(img, rng, 0.01), "JPEG", 85)


STYLES: dict[str, Render] = {
    "page on a table (JPEG)": page_on_table,
    "thin pen (JPEG q75)": thin_pen,
    "fat marker (PNG)": fat_marker,
    "8x8 scan": scan(8),
    "8x8 scan, upscaled": scan(8, 8),
    "8x8 scan, photographed": scan_photo,
    "16x16 scan": scan(16),
    "16x16 scan, upscaled": scan(16, 4),
    "blue ballpoint, lined/squared": ballpoint,
}


def rendered(
    images: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    render: Render,
    count: int = 200,
    seed: int = 0,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], int]:
    """`count` random test digits rendered and read back by predict's preprocessing.

    Returns the 28x28 digits (flattened), their labels, and how many files were refused.
    """
    from mnist_infer.errors import ImageError
    from mnist_infer.image import load_digit

    rng = np.random.default_rng([seed, 18])
    pick = rng.choice(len(images), count, replace=False)
    digits, keep, refused = [], [], 0
    for i in pick:
        data = render(images[i].reshape(28, 28), rng)
        try:
            d, _ = load_digit(io.BytesIO(data), f"test-{i}")
        except ImageError:
            refused += 1
            continue
        digits.append(d.reshape(784))
        keep.append(labels[i])
    return np.array(digits, np.uint8).reshape(-1, 784), np.array(keep, np.uint8), refused


def score(
    digits: NDArray[np.uint8], labels: NDArray[np.uint8], refused: int, weights: str | None
) -> float:
    """Accuracy with the weights, a refused file counting as wrong."""
    from mnist_infer.predict import load_network

    if not len(digits):
        return 0.0
    pred, _ = load_network(weights).classify(digits, 1000)
    return float(np.sum(pred == labels)) / (len(labels) + refused)


def accuracy(
    images: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    render: Render,
    weights: str | None = None,
    count: int = 200,
    seed: int = 0,
) -> tuple[float, int]:
    """(accuracy, files refused) of preprocessing plus the weights on one style."""
    digits, keep, refused = rendered(images, labels, render, count, seed)
    return score(digits, keep, refused, weights), refused


def main() -> None:
    import argparse
    import os
    from pathlib import Path

    from mnist_infer.dataset import load_arrays
    from mnist_infer.download import fetch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="*", default=["default"], help="files or short names")
    ap.add_argument("--count", type=int, default=300, help="digits per style")
    ap.add_argument("--style", action="append", help="only styles whose name holds this")
    args = ap.parse_args()
    cache = Path(os.environ.get("MNIST_INFER_CACHE", "/tmp/mnist-infer-devsets"))
    fetch("test", cache, mirrors=[str(Path(os.environ["MNIST_INFER_TEST_DATA"]) / "mnist")])
    images, labels = load_arrays("test", cache)
    print("| style | " + " | ".join(f"`{w}`" for w in args.weights) + " |")
    print("| --- |" + " --- |" * len(args.weights))
    for name, render in STYLES.items():
        if args.style and not any(s in name for s in args.style):
            continue
        digits, keep, refused = rendered(images, labels, render, args.count)
        note = f" ({refused} refused)" if refused else ""
        cells = [f"{score(digits, keep, refused, w):.3f}{note}" for w in args.weights]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
