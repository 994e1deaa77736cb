"""MNIST preprocessing of grey levels: page, noise, ink, crop, a 20x20 box in a 28x28 frame."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, NoReturn, TypeVar

import numpy as np

from mnist_infer.errors import ImageError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Digit = NDArray[np.uint8]

Invert = Literal["auto", "yes", "no"]
_T = TypeVar("_T", bound=np.generic)

SIZE = 28  # output frame
BOX = 20  # the digit's longer side inside the frame, as in MNIST
HIRES = 24  # digits larger than this (px) get their box measured at half ink strength
SMALL = 64  # smaller images skip speck and lighting filters (MNIST-like inputs stay exact)
MIN_CONTRAST = 0.08  # ink must differ from the background by this much (of full scale)
MIN_SIDE = 4  # px: a smaller mark, blown up to 20 px, is a blob and no digit
QUANT = 1 / 255  # noise never measures below one 8-bit step: JPEG and flattening can zero it
INK_FLOOR = 0.2  # in photos, fainter marks (of the strongest ink's contrast) are no full ink
PAGE_GRID = 96  # page finding works on a copy about this many cells a side
TINY = 20  # images this small (longer side, px) are enlarged before normalisation
RULED = 0.5  # a row or column inked over this fraction of its length is a ruled line


def border(a: NDArray[_T]) -> NDArray[_T]:
    """The one-pixel outer ring of a 2-D array."""
    if min(a.shape) < 3:
        return a.ravel()
    return np.concatenate((a[0], a[-1], a[1:-1, 0], a[1:-1, -1]))


def median(a: NDArray[np.float32]) -> float:
    """Median of a 1-D array (np.median's overhead dominates on small images)."""
    k = a.size // 2
    if a.size % 2:
        return float(np.partition(a, k)[k])
    p = np.partition(a, (k - 1, k))
    return 0.5 * (float(p[k - 1]) + float(p[k]))


def _flatten(g: NDArray[np.float32]) -> NDArray[np.float32]:
    """Ink (bright) above a smooth background map: the darkest level around each cell."""
    from PIL import Image

    h, w = g.shape
    cell = max(2, min(h, w) // 16)  # wider strokes than about 2 cells would be eaten
    gh, gw = -(-h // cell), -(-w // cell)
    img = Image.fromarray(g, "F")
    small = np.asarray(img.resize((gw, gh), Image.Resampling.BOX), dtype=np.float32)
    for _ in range(2):  # 5x5-cell minimum: the background between and around strokes
        small = _min3(small)
    p = np.pad(small, 1, mode="edge")  # 3x3 mean: a smooth map, no steps between cells
    small = np.stack([p[i : i + gh, j : j + gw] for i in range(3) for j in range(3)]).mean(0)
    up = Image.fromarray(small.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR)
    # Keep the negative side: clipping it would halve the noise measured on the border,
    # and noise peaks would pass for ink.
    return g - np.asarray(up, dtype=np.float32)


def _min3(a: NDArray[np.float32]) -> NDArray[np.float32]:
    """3x3 minimum filter; the edges use the neighbours that exist."""
    r = a.copy()
    np.minimum(r[1:], a[:-1], out=r[1:])
    np.minimum(r[:-1], a[1:], out=r[:-1])
    c = r.copy()
    np.minimum(c[:, 1:], r[:, :-1], out=c[:, 1:])
    np.minimum(c[:, :-1], r[:, 1:], out=c[:, :-1])
    return c


def _mean2(a: NDArray[np.float32]) -> NDArray[np.float32]:
    """2x2 box average (odd last row/column dropped): halves noise for level estimates."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _extent(profile: NDArray[np.float32]) -> tuple[int, int]:
    """First and last index of the ink, dropping outer runs holding under 1% of the mass."""
    on = profile > 0
    idx = np.flatnonzero(on)
    lo, hi = int(idx[0]), int(idx[-1])
    if idx.size == hi - lo + 1:  # one run: the usual case
        return lo, hi
    starts = np.flatnonzero(on & ~np.r_[False, on[:-1]])
    ends = np.flatnonzero(on & ~np.r_[on[1:], False])
    mass = np.array([profile[s : e + 1].sum() for s, e in zip(starts, ends, strict=True)])
    keep = np.flatnonzero(mass >= 0.01 * mass.sum())
    return int(starts[keep[0]]), int(ends[keep[-1]])


def normalize(gray: NDArray[np.float32], invert: Invert = "auto", name: str = "image") -> Digit:
    """MNIST normalisation of a grayscale picture in [0, 1]; returns a (28, 28) uint8 digit."""
    g = gray
    if invert != "yes" and g.shape == (SIZE, SIZE) and float(g.max()) == 1.0:
        d = np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8)
        if _mnist_form(d):
            return d
    big = min(g.shape) > SMALL
    if big:
        g = find_page(g)
    elif max(g.shape) < TINY:
        g = enlarge_tiny(g)
    ring = border(g)
    lo, hi = float(ring.min()), float(ring.max())
    bg = lo if lo == hi else median(ring)
    s = _mean2(g) if big else g
    dark, light = bg - float(s.min()), float(s.max()) - bg
    # Unless told, the ink is what departs most from the background, lighter or darker.
    flip = dark > light if invert == "auto" else invert == "yes"
    if flip:
        g, ring, bg = 1 - g, 1 - ring, 1 - bg
    if big:  # photos: uneven light and shadows, so subtract a background map
        if (dark if flip else light) < MIN_CONTRAST:
            # No ink of the expected shade: flattening would make some of the paper's.
            _no_digit(name, invert)
        g = _flatten(g)
        ring = border(g)
        lo, hi = float(ring.min()), float(ring.max())
        bg = lo if lo == hi else median(ring)
    # Background noise level from the border; ink is what rises clearly above it.
    if big:
        cut = bg + 3 * noise_level(ring, bg)
    else:  # drawings and scans: exact levels (MNIST-like inputs come out unchanged)
        sigma = 0.0 if lo == hi else 1.4826 * median(np.abs(ring - np.float32(bg)))
        cut = min(bg + 3 * sigma, bg + 0.5 * (float(g.max()) - bg))
    on = g > cut
    strong = on
    if big:  # isolated specks (noise, dust) must not set the ink level or widen the box
        on &= _count3(on) >= 3
        on &= ~ruled_lines(on)
        # JPEG ringing and paper texture are faint: they must not set the ink's level.
        strong = on & (g > ink_floor(g, bg))
    top = _top(g[strong], big) if strong.any() else bg
    if top - bg < MIN_CONTRAST:
        _no_digit(name, invert)
    # Ink strength relative to the background keeps the anti-aliased edges in proportion.
    ink = g - np.float32(bg)
    if cut > bg:
        ink *= on
    ink *= np.float32(1 / (top - bg))
    np.clip(ink, 0, 1, out=ink)
    y0, y1 = _extent(ink.sum(axis=1))
    x0, x1 = _extent(ink.sum(axis=0))
    if max(y1 - y0, x1 - x0) + 1 > HIRES:
        # A digit drawn bigger than MNIST's box has blurred edges several pixels wide;
        # NIST's originals were binary, so measure the outline at half strength.
        half = ink * (ink >= 0.5)
        y0, y1 = _extent(half.sum(axis=1))
        x0, x1 = _extent(half.sum(axis=0))
    h, w = y1 - y0 + 1, x1 - x0 + 1
    if max(h, w) < MIN_SIDE:
        raise ImageError(
            f"{name}: the ink spans only {w}x{h} pixels, expected a digit at least {MIN_SIDE}"
            " pixels tall or wide"
        )
    return _frame(ink[y0 : y1 + 1, x0 : x1 + 1])


def _mnist_form(d: Digit) -> bool:
    """True if a 28x28 uint8 digit already is in MNIST's form, so normalize would return it
    unchanged: a black border, full-strength ink, a 20-pixel box without gaps, the mass on
    the centre (measured as _frame measures it)."""
    m = d.astype(np.int32)
    # Exact integer sums, as _frame's are; plain lists, since this runs once per file and
    # 28 numbers cost less in Python than another numpy call each.
    rs, cs = m.sum(axis=1).tolist(), m.sum(axis=0).tolist()
    if rs[0] or rs[-1] or cs[0] or cs[-1] or b"\xff" not in d.tobytes():
        return False
    rows = [i for i, v in enumerate(rs) if v]
    cols = [i for i, v in enumerate(cs) if v]
    y0, y1, x0, x1 = rows[0], rows[-1], cols[0], cols[-1]
    h, w = y1 - y0 + 1, x1 - x0 + 1
    if max(h, w) != BOX or len(rows) != h or len(cols) != w:
        return False
    total = sum(rs)
    cy = (sum(i * v for i, v in enumerate(rs)) - y0 * total) / total  # centre of the crop's mass
    cx = (sum(i * v for i, v in enumerate(cs)) - x0 * total) / total
    oy = min(max(math.floor(SIZE // 2 - cy + 0.5), 0), SIZE - h)
    ox = min(max(math.floor(SIZE // 2 - cx + 0.5), 0), SIZE - w)
    return (oy, ox) == (y0, x0)


def noise_level(ring: NDArray[np.float32], bg: float) -> float:
    """Robust noise sigma of the background ring (MAD), never below one 8-bit step.

    After background flattening a clean border is exactly 0, and a zero sigma would make
    every JPEG ripple ink.
    """
    return max(1.4826 * median(np.abs(ring - np.float32(bg))), QUANT)


def ink_floor(g: NDArray[np.float32], bg: float) -> float:
    """INK_FLOOR of the way from the background to the strongest ink (2x2 means, so a
    single bright pixel does not count): fainter marks do not set the ink's full level."""
    peak = float(_mean2(g).max()) if min(g.shape) > 1 else float(g.max())
    return bg + INK_FLOOR * (peak - bg)


def ruled_lines(on: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Pixels of lined or squared paper: thin runs of rows (columns) inked over most of
    their length. A digit's bar that wide is also thick, and stays."""
    return _thin_runs(on.mean(axis=1) > RULED)[:, None] | _thin_runs(on.mean(axis=0) > RULED)


def _thin_runs(full: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The runs of True in full that are at most 1.5% of its length (and 3) long."""
    longest = max(3, round(0.015 * full.size))
    edges = np.flatnonzero(np.diff(np.r_[0, full.view(np.int8), 0]))
    out = np.zeros_like(full)
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a <= longest:
            out[a:b] = True
    return out


def enlarge_tiny(g: NDArray[np.float32]) -> NDArray[np.float32]:
    """A tiny scan (8x8, 16x16) enlarged smoothly, with a margin of its background around it.

    The digit of a tiny scan touches the frame, so the border would hold ink: the margin's
    level is the lighter or darker extreme, whichever the border is closer to.
    """
    from PIL import Image

    ring = border(g)
    lo, hi = float(g.min()), float(g.max())
    bg = hi if median(ring) - lo > hi - median(ring) else lo
    f = -(-2 * TINY // max(g.shape))
    big = Image.fromarray(np.ascontiguousarray(g), "F").resize(
        (g.shape[1] * f, g.shape[0] * f), Image.Resampling.BICUBIC
    )
    out = np.full((g.shape[0] * f + 2 * f, g.shape[1] * f + 2 * f), bg, np.float32)
    out[f:-f, f:-f] = np.clip(np.asarray(big, np.float32), 0, 1)
    return out


def otsu(a: NDArray[np.float32]) -> float:
    """The level that best splits a's values into two classes (Otsu's method)."""
    hist = np.bincount(np.clip(a * 255, 0, 255).astype(np.intp).ravel(), minlength=256)
    if np.count_nonzero(hist) < 2:  # one level: nothing to split
        return float(np.argmax(hist)) / 255
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w - mu) ** 2 / (w * (1 - w))
    return (int(np.nanargmax(between)) + 0.5) / 255


def _spread(seed: NDArray[np.bool_], allowed: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Grow seed through 4-neighbours inside allowed until it stops."""
    reach = seed & allowed
    while True:
        p = np.pad(reach, 1)
        grown = (p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]) & allowed
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def largest_region(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 4-connected region of mask."""
    h, w = mask.shape
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), 0)
    while True:  # every pixel takes the largest label around it, until none changes
        p = np.pad(lab, 1)
        nb = np.maximum.reduce(
            [p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]
        )
        nb *= mask
        if np.array_equal(nb, lab):
            break
        lab = nb
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    return lab == int(counts.argmax())


def _erode(m: NDArray[np.bool_], r: int) -> NDArray[np.bool_]:
    """m shrunk by r pixels (3x3 minimum r times)."""
    for _ in range(r):
        m = _min3(m.astype(np.float32)) > 0.5
    return m


def find_page(g: NDArray[np.float32]) -> NDArray[np.float32]:
    """A light page photographed on a darker surface: everything around it painted paper.

    The page is the largest light region with its holes (the ink) filled; it is taken for a
    page only if the picture's border is mostly dark, it covers at least 15% of the picture,
    its holes are a small part of it, and it is solid (60% of its bounding box) and thick
    (it survives shrinking by 8% of the picture). Otherwise the picture is returned as it is.
    """
    from PIL import Image

    h, w = g.shape
    f = max(1, min(h, w) // PAGE_GRID)
    small = np.asarray(Image.fromarray(g, "F").reduce(f), np.float32) if f > 1 else g
    t = otsu(small)
    light = small > t
    if not light.any() or border(light.astype(np.float32)).mean() >= 0.5:
        return g  # light all around: the paper (or the picture) is the background already
    page = largest_region(light)
    outside = _spread(
        np.pad(np.ones((small.shape[0] - 2, small.shape[1] - 2), bool), 1) ^ True, ~page
    )
    filled = ~outside
    area, holes = int(filled.sum()), int((filled & ~page).sum())
    if area < 0.15 * small.size or not 0 < holes < 0.3 * area:
        return g
    ys, xs = np.nonzero(filled)
    if (
        area < 0.6 * (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
        or not _erode(filled, round(0.08 * min(small.shape))).any()
    ):
        return g  # not a solid, thick shape: a light stroke on a dark ground, say
    inner = _erode(filled, 2)  # drop the page's edge: shadows, the table's blur behind it
    paper = median(small[page])
    m = Image.fromarray(inner.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)
    return np.where(np.asarray(m) > 127, g, np.float32(paper))


def _no_digit(name: str, invert: Invert) -> NoReturn:
    hint = f"; --invert {invert} expects {_INK[invert]} ink" if invert != "auto" else ""
    raise ImageError(f"{name}: no digit found (blank or single-colour image){hint}")


def _top(ink: NDArray[np.float32], big: bool) -> float:
    """Level of full-strength ink: the maximum, or a high percentile where noise rides on it."""
    if not big:
        return float(ink.max())
    k = int(0.95 * (ink.size - 1))
    return float(np.partition(ink, k)[k])


_INK = {"yes": "dark", "no": "light"}


def _count3(on: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Number of set pixels in each 3x3 neighbourhood (the pixel included)."""
    m = on.view(np.uint8)
    r = m.copy()
    r[1:] += m[:-1]
    r[:-1] += m[1:]
    c = r.copy()
    c[:, 1:] += r[:, :-1]
    c[:, :-1] += r[:, 1:]
    return c


def _frame(crop: NDArray[np.float32]) -> Digit:
    """Scale the crop's longer side to 20 px and centre its mass in a 28x28 frame."""
    h, w = crop.shape
    s = BOX / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if (nh, nw) != (h, w):
        from PIL import Image

        resample = Image.Resampling.LANCZOS
        small = Image.fromarray(np.ascontiguousarray(crop), "F").resize((nw, nh), resample)
        crop = np.asarray(small, dtype=np.float32)
    d = np.clip(crop * 255 + 0.5, 0, 255).astype(np.uint8)
    m = d.astype(np.float32)
    total = float(m.sum())
    if total == 0:
        oy, ox = (SIZE - nh) // 2, (SIZE - nw) // 2
    else:
        cy = float((m.sum(axis=1) * np.arange(nh)).sum()) / total
        cx = float((m.sum(axis=0) * np.arange(nw)).sum()) / total
        # MNIST put the centre of mass on pixel (14, 14); keep the digit inside the frame.
        oy = min(max(int(np.floor(SIZE // 2 - cy + 0.5)), 0), SIZE - nh)
        ox = min(max(int(np.floor(SIZE // 2 - cx + 0.5)), 0), SIZE - nw)
    out = np.zeros((SIZE, SIZE), np.uint8)
    out[oy : oy + nh, ox : ox + nw] = d
    return out


def grey8_digit(d: Digit, invert: Invert = "auto", name: str = "image") -> Digit:
    """preprocess() for 8-bit grey pixels (sides up to WORK)."""
    if d.shape == (SIZE, SIZE) and invert != "yes" and _mnist_form(d):
        return d.copy()
    return normalize(d.astype(np.float32) * np.float32(1 / 255), invert, name)


def grey8_as_is(d: Digit, invert: Invert = "auto", name: str = "image") -> Digit:
    """as_is() for 8-bit grey pixels: their bytes are the answer unless they must be inverted."""
    need_mnist_size(d.shape, name)
    if invert == "yes" or (invert == "auto" and _light_border(d)):
        return 255 - d
    return d.copy()


def _light_border(d: Digit) -> bool:
    """True if the median of an 8-bit image's outer ring is above 0.5, as median(border(g))
    finds it on to_gray's float32 levels (ties at mid-grey fall the same way)."""
    ring = sorted(border(d).tolist())  # ~100 numbers: plain Python beats numpy's overhead
    k = len(ring) // 2
    lo, hi = _LEVELS[ring[k - 1 if len(ring) % 2 == 0 else k]], _LEVELS[ring[k]]
    return 0.5 * (lo + hi) > 0.5


_LEVELS = (np.arange(256, dtype=np.float32) * np.float32(1 / 255)).tolist()  # to_gray's levels


def need_mnist_size(shape: tuple[int, ...], name: str) -> None:
    if shape != (SIZE, SIZE):
        h, w = shape
        raise ImageError(
            f"{name}: is {w}x{h}, --no-preprocess needs 28x28 (drop --no-preprocess to resize)"
        )
