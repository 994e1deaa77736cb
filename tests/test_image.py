"""Preprocessing of image files into MNIST-style digits, on real and rendered images."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from textbook import real_test_set

from mnist_infer import decode, export, image, preprocess
from mnist_infer.errors import ImageError
from mnist_infer.network import Network
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import load_weights

RNG_SEED = 20240611


def _stroke_digit() -> np.ndarray:
    """A synthetic 28x28 MNIST-like '7' (white on black, anti-aliased, centred)."""
    big = Image.new("L", (112, 112), 0)
    from PIL import ImageDraw

    d = ImageDraw.Draw(big)
    d.line([(30, 24), (82, 24), (50, 92)], fill=255, width=10)
    digit = preprocess.normalize(np.asarray(big, np.float32) / 255)
    return digit


SEVEN = _stroke_digit()


def _png(img: Image.Image, fmt: str = "PNG", **kw: object) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    buf.seek(0)
    return buf


def _centre_of_mass(d: np.ndarray) -> tuple[float, float]:
    m = d.astype(np.float64)
    idx = np.arange(28)
    return float(m.sum(1) @ idx / m.sum()), float(m.sum(0) @ idx / m.sum())


def _box(d: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(d.any(1)), np.flatnonzero(d.any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _shifted_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of a and b, at the best of the one-pixel shifts of b."""
    return min(
        float(np.abs(a.astype(int) - np.roll(b, (dy, dx), axis=(0, 1))).mean())
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


# --- renderings of a 28x28 digit the ways people hand digits over ---------------------


def paper(x: np.ndarray, r: np.random.Generator) -> io.BytesIO:
    """Dark ink on white paper, scaled up 4-8x (bilinear), off-centre in a bigger page."""
    k = int(r.integers(4, 9))
    s = 28 * k
    ink = Image.fromarray(255 - x).resize((s, s), Image.Resampling.BILINEAR)
    page = Image.new("L", (int(s * r.uniform(1.2, 2.5)), int(s * r.uniform(1.2, 2.5))), 255)
    page.paste(
        ink, (int(r.integers(0, page.width - s + 1)), int(r.integers(0, page.height - s + 1)))
    )
    return _png(page)


def transparent(x: np.ndarray, r: np.random.Generator) -> io.BytesIO:
    """RGBA: coloured ink whose alpha is the digit, arbitrary colour under transparency."""
    a = np.asarray(Image.fromarray(x).resize((56, 56), Image.Resampling.BILINEAR))
    rgba = np.empty((56, 56, 4), np.uint8)
    rgba[..., :3] = r.integers(0, 256, 3)
    rgba[a == 0, :3] = r.integers(0, 256, 3)
    rgba[..., 3] = a
    return _png(Image.fromarray(rgba, "RGBA"))


def grey_jpeg(x: np.ndarray, r: np.random.Generator) -> io.BytesIO:
    """Light grey noisy paper, dark ink, JPEG quality 75."""
    up = np.asarray(Image.fromarray(x).resize((84, 84), Image.Resampling.BILINEAR)) / 255
    bg, ink = r.uniform(170, 215), r.uniform(20, 70)
    px = bg - (bg - ink) * up + r.normal(0, 6, up.shape)
    return _png(Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)), "JPEG", quality=75)


def corner(x: np.ndarray, r: np.random.Generator) -> io.BytesIO:
    """The digit, unscaled, in a corner of a larger black image."""
    page = Image.new("L", (200, 150), 0)
    page.paste(Image.fromarray(x), (int(r.choice([0, 172])), int(r.choice([0, 122]))))
    return _png(page)


def photo(x: np.ndarray, r: np.random.Generator) -> io.BytesIO:
    """A photo of paper: scaled, slightly rotated, strongly uneven light, noise, tint, JPEG."""
    s = int(r.integers(150, 300))
    d = Image.fromarray(x).resize((s, s), Image.Resampling.BICUBIC)
    d = d.rotate(float(r.uniform(-8, 8)), Image.Resampling.BILINEAR, expand=True)
    w, h = int(d.width * 1.8), int(d.height * 1.5)
    ink = np.zeros((h, w), np.float32)
    ox, oy = int(r.integers(0, w - d.width)), int(r.integers(0, h - d.height))
    ink[oy : oy + d.height, ox : ox + d.width] = np.asarray(d, np.float32) / 255
    yy, xx = np.mgrid[0:h, 0:w]
    a = r.uniform(0, 2 * np.pi)
    slope = np.cos(a) * xx / w + np.sin(a) * yy / h
    light = 215 - r.uniform(30, 110) * (slope - slope.min()) / np.ptp(slope)  # lit from one side
    g = light * (1 - 0.75 * ink) + r.normal(0, 6, ink.shape)
    rgb = np.clip(np.stack([g, g * 0.97, g * 0.9], -1), 0, 255).astype(np.uint8)
    return _png(Image.fromarray(rgb), "JPEG", quality=80)


RENDERINGS = [paper, transparent, grey_jpeg, corner]


@pytest.fixture(scope="module")
def default_net() -> Network:
    p = default_weights_path(check=False)
    if not p.is_file():
        pytest.skip(f"no shipped default weights at {p}")
    return Network(load_weights(p))


@pytest.fixture(scope="module")
def sample(real_mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A few hundred real test digits (28x28 uint8) and their labels, chosen at random."""
    x, t = real_test_set(real_mnist_dir)
    idx = np.random.default_rng(RNG_SEED).choice(len(x), 300, replace=False)
    return x[idx].reshape(-1, 28, 28), t[idx]


def _classify(net: Network, digits: list[np.ndarray] | np.ndarray) -> np.ndarray:
    x = np.stack(digits).reshape(len(digits), 784)
    return net.predict(x / 255).argmax(axis=1)


@pytest.mark.parametrize("render", RENDERINGS, ids=lambda f: f.__name__)
def test_renderings_predict_like_the_original(
    render: Callable[[np.ndarray, np.random.Generator], io.BytesIO],
    sample: tuple[np.ndarray, np.ndarray],
    default_net: Network,
) -> None:
    x, _ = sample
    r = np.random.default_rng(RNG_SEED)
    digits = [image.load_digit(render(d, r), "x")[0] for d in x]
    agree = np.mean(_classify(default_net, digits) == _classify(default_net, x))
    assert agree >= 0.97, f"{render.__name__}: only {agree:.1%} agree with the 28x28 originals"


def test_photo_of_a_digit_is_recognised(
    sample: tuple[np.ndarray, np.ndarray], default_net: Network
) -> None:
    x, _ = sample
    r = np.random.default_rng(RNG_SEED)
    digits = [image.load_digit(photo(d, r), "x")[0] for d in x[:100]]
    agree = np.mean(_classify(default_net, digits) == _classify(default_net, x[:100]))
    assert agree >= 0.9
    for d in digits:
        cy, cx = _centre_of_mass(d)
        assert abs(cy - 14) <= 0.5
        assert abs(cx - 14) <= 0.5
        assert max(_box(d)) in (20, 21)


def test_mnist_digits_come_out_nearly_unchanged(real_mnist_dir: Path) -> None:
    x, _ = real_test_set(real_mnist_dir)
    x = x[:1000].reshape(-1, 28, 28)
    out = np.stack([preprocess.normalize(d / np.float32(255)) for d in x])
    diff = np.abs(out.astype(int) - x)
    assert diff.mean() < 0.1
    assert np.mean(diff.max(axis=(1, 2)) <= 1) >= 0.99


# --- transparency ----------------------------------------------------------------------


def _rgba(alpha: np.ndarray, ink: tuple[int, int, int], under: tuple[int, int, int]) -> Image.Image:
    a = np.empty((*alpha.shape, 4), np.uint8)
    a[...] = (*ink, 0)
    a[alpha == 0, :3] = under
    a[..., 3] = alpha
    return Image.fromarray(a, "RGBA")


@pytest.mark.parametrize(
    ("ink", "under"),
    [((0, 0, 0), (0, 0, 0)), ((255, 255, 255), (255, 255, 255)), ((200, 30, 30), (0, 0, 0))],
    ids=["black-on-black-rgb", "white-on-white-rgb", "red-on-black-rgb"],
)
def test_transparent_background_uses_alpha_as_ink(
    ink: tuple[int, int, int], under: tuple[int, int, int]
) -> None:
    # RGB alone would show nothing (black ink over black RGB, white over white).
    out = image.preprocess(_rgba(SEVEN, ink, under))
    assert np.array_equal(out, SEVEN)


@pytest.mark.parametrize("mode", ["LA", "PA"])
def test_other_transparent_modes(mode: str) -> None:
    img = _rgba(SEVEN, (0, 0, 255), (255, 255, 255)).convert(mode)
    assert np.abs(image.preprocess(img).astype(int) - SEVEN).mean() < 2


def test_palette_with_alpha_per_entry() -> None:
    img = Image.fromarray(SEVEN, "P")  # entry i: blue ink with alpha i (PNG8 with tRNS)
    img.putpalette([0, 0, 200] * 256)
    img.info["transparency"] = bytes(range(256))
    assert np.array_equal(image.preprocess(img), SEVEN)


def test_palette_with_one_transparent_entry() -> None:
    binary = np.where(SEVEN > 127, 1, 0).astype(np.uint8)
    img = Image.fromarray(binary, "P")  # GIF style: entry 0 transparent, entry 1 black ink
    img.putpalette([255, 255, 255, 0, 0, 0])
    img.info["transparency"] = 0
    expected = image.preprocess(Image.fromarray(binary * 255))
    assert np.array_equal(image.preprocess(img), expected)


def test_opaque_sheet_on_transparent_canvas_is_composited() -> None:
    # A white sheet with a black digit, surrounded by transparency: the sheet is not the ink.
    canvas = np.zeros((60, 60, 4), np.uint8)
    canvas[10:50, 10:50] = (255, 255, 255, 255)
    canvas[16:44, 16:44, :3] = 255 - SEVEN[..., None]
    out = image.preprocess(Image.fromarray(canvas, "RGBA"))
    assert np.abs(out.astype(int) - SEVEN).mean() < 2


def test_opaque_rgba_ignores_alpha() -> None:
    rgba = Image.fromarray(SEVEN).convert("RGBA")
    assert np.array_equal(image.preprocess(rgba), SEVEN)


# --- polarity, orientation, sizes, bit depths ----------------------------------------------


@pytest.mark.parametrize(
    ("picture", "invert"),
    [
        ("white_on_black", "auto"),
        ("black_on_white", "auto"),
        ("white_on_black", "no"),
        ("black_on_white", "yes"),
    ],
)
def test_invert(picture: str, invert: preprocess.Invert) -> None:
    x = SEVEN if picture == "white_on_black" else 255 - SEVEN
    assert np.array_equal(image.preprocess(Image.fromarray(x), invert), SEVEN)


@pytest.mark.parametrize(
    ("picture", "invert", "ink"), [(SEVEN, "yes", "dark"), (255 - SEVEN, "no", "light")]
)
@pytest.mark.parametrize("side", [28, 200])  # small pictures, and photos that get flattened
def test_wrong_invert_finds_no_ink(
    picture: np.ndarray, invert: preprocess.Invert, ink: str, side: int
) -> None:
    img = Image.fromarray(picture).resize((side, side), Image.Resampling.BICUBIC)
    with pytest.raises(ImageError) as err:
        image.preprocess(img, invert, name="d.png")
    assert str(err.value) == (
        f"d.png: no digit found (blank or single-colour image); --invert {invert} expects {ink} ink"
    )


def test_exif_orientation_is_honoured() -> None:
    big = Image.fromarray(255 - SEVEN).resize((112, 112), Image.Resampling.BICUBIC)
    # Stored rotated; orientation 6 tells viewers to rotate it 90° clockwise back.
    stored = big.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright, _ = image.load_digit(_png(big, "JPEG", quality=95), "a.jpg")
    tagged, _ = image.load_digit(_png(stored, "JPEG", quality=95, exif=exif), "b.jpg")
    untagged, _ = image.load_digit(_png(stored, "JPEG", quality=95), "c.jpg")
    assert np.abs(tagged.astype(int) - upright).mean() < 3
    assert np.abs(untagged.astype(int) - upright).mean() > 20


def test_big_photo_is_reduced_and_specks_ignored() -> None:
    r = np.random.default_rng(1)
    page = np.full((2400, 3200), 230, np.uint8)
    ink = np.asarray(Image.fromarray(SEVEN).resize((800, 800), Image.Resampling.BICUBIC))
    page[800:1600, 1200:2000] -= (ink.astype(np.uint16) * 200 // 255).astype(np.uint8)
    ys, xs = r.integers(0, 2400, 40), r.integers(0, 3200, 40)
    page[ys, xs] = 0  # dust: single dark pixels all over the page
    out, _ = image.load_digit(_png(Image.fromarray(page), "JPEG", quality=90), "big.jpg")
    assert _box(out) == _box(SEVEN)
    assert _shifted_difference(out, SEVEN) < 6


def _noisy_one(r: np.random.Generator, sigma: float) -> Image.Image:
    """A photo-sized page with a thin dark '1' somewhere on it and Gaussian sensor noise."""
    from PIL import ImageDraw

    big = Image.new("L", (84, 84), 0)
    ImageDraw.Draw(big).line([(44, 8), (40, 76)], fill=255, width=5)
    ink = np.zeros((204, 284), np.float32)
    oy, ox = int(r.integers(0, 120)), int(r.integers(0, 200))
    ink[oy : oy + 84, ox : ox + 84] = np.asarray(big, np.float32) / 255
    g = 240 - 200 * ink + r.normal(0, sigma, ink.shape)
    return Image.fromarray(np.clip(g + 0.5, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("sigma", [4, 8, 12])
def test_noise_does_not_hide_a_thin_stroke(sigma: float) -> None:
    r = np.random.default_rng(RNG_SEED)
    for _ in range(10):
        out = image.preprocess(_noisy_one(r, sigma), name="one.png")
        h, w = _box(out)
        assert h == 20
        assert w <= 4


@pytest.mark.parametrize(
    ("mode", "top"),
    [("I;16", 65535), ("I;16", 4095), ("I;16", 1023), ("I", 255), ("F", 1.0), ("F", 1000.0)],
)
def test_wide_pixels_use_the_smallest_full_scale_that_holds_them(mode: str, top: float) -> None:
    a = SEVEN.astype(np.float32) * np.float32(top / 255)
    if mode == "F":
        img, fmt = Image.fromarray(a, "F"), "TIFF"
    else:  # PNG holds 16-bit pixels, TIFF 32-bit ones
        img = Image.fromarray(np.rint(a).astype(np.int32), "I").convert(mode)
        fmt = "PNG" if mode == "I;16" else "TIFF"
    out, _ = image.load_digit(_png(img, fmt), "deep")
    assert np.abs(out.astype(int) - SEVEN).mean() < 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pixels_that_are_not_numbers_are_refused(bad: float) -> None:
    a = SEVEN.astype(np.float32) / 255
    a[3, 3:5] = bad
    with pytest.raises(ImageError) as err:
        image.load_digit(_png(Image.fromarray(a, "F"), "TIFF"), "odd.tif")
    assert str(err.value) == (
        "odd.tif: 2 of 784 pixels are not numbers (NaN or infinite),"
        " expected finite brightness values"
    )


def test_tiny_digit_is_scaled_up() -> None:
    small = Image.fromarray(SEVEN).resize((10, 10), Image.Resampling.BOX)
    out = image.preprocess(small)
    assert max(_box(out)) == 20
    assert abs(_centre_of_mass(out)[0] - 14) <= 0.5


@pytest.mark.parametrize(("w", "h"), [(1, 1), (3, 2), (1, 3)])
def test_a_dot_is_no_digit(w: int, h: int) -> None:
    a = np.zeros((28, 28), np.uint8)
    a[10 : 10 + h, 12 : 12 + w] = 255
    with pytest.raises(ImageError) as err:
        image.preprocess(Image.fromarray(a), name="dot.png")
    assert str(err.value) == (
        f"dot.png: the ink spans only {w}x{h} pixels,"
        " expected a digit at least 4 pixels tall or wide"
    )
    a[10:14, 12] = 255  # four pixels tall: a short stroke, which may be a digit
    assert image.preprocess(Image.fromarray(a)).any()


@pytest.mark.parametrize(
    "blank",
    [
        Image.new("RGB", (50, 40), (250, 250, 250)),
        _rgba(np.zeros_like(SEVEN), (0, 0, 0), (255, 255, 255)),  # fully transparent
        Image.fromarray(np.dstack([SEVEN, np.zeros_like(SEVEN)]), "LA"),  # hidden ink
    ],
    ids=["near-white", "transparent-rgba", "transparent-la"],
)
def test_blank_image_has_no_digit(blank: Image.Image) -> None:
    with pytest.raises(
        ImageError, match=r"^w.png: no digit found \(blank or single-colour image\)$"
    ):
        image.preprocess(blank, name="w.png")


def test_as_is_needs_28x28() -> None:
    assert np.array_equal(image.as_is(Image.fromarray(SEVEN)), SEVEN)
    assert np.array_equal(image.as_is(Image.fromarray(255 - SEVEN)), SEVEN)
    with pytest.raises(ImageError, match=r"^s.png: is 30x20, --no-preprocess needs 28x28"):
        image.as_is(Image.new("L", (30, 20)), name="s.png")


def test_art_shows_the_digit() -> None:
    art = export.to_art(SEVEN).split("\n")
    assert len(art) == 28
    assert all(len(row) == 56 for row in art)
    assert art[0] == " " * 56
    assert "@" in "".join(art)
    assert export.to_art(np.full((28, 28), 255, np.uint8)) == "\n".join(["@" * 56] * 28)


# --- the preprocessing steps for photos and scans, each on its own ---------------------


def _seven_ink(side: int, width: int) -> np.ndarray:
    """A '7' drawn `width` px wide in a side x side square, ink strength in [0, 1]."""
    from PIL import ImageDraw

    big = Image.new("L", (side, side), 0)
    k = side / 112
    pts = [(30 * k, 24 * k), (82 * k, 24 * k), (50 * k, 92 * k)]
    ImageDraw.Draw(big).line(pts, fill=255, width=width)
    return np.asarray(big, np.float32) / 255


def test_noise_level_never_collapses_to_zero() -> None:
    flat = np.zeros(400, np.float32)
    assert preprocess.noise_level(flat, 0.0) == preprocess.QUANT
    noisy = np.random.default_rng(0).normal(0.5, 0.05, 4000).astype(np.float32)
    assert preprocess.noise_level(noisy, 0.5) == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize("width", [2, 3, 4])
def test_thin_pen_jpeg_is_a_digit(width: int) -> None:
    """300x300, background 235, black 7 drawn 2-4 px wide, JPEG q75: once refused as blank."""
    ink = np.zeros((300, 300), np.float32)
    ink[50:250, 60:260] = _seven_ink(200, width)
    page = Image.fromarray((235 - 228 * ink + 0.5).astype(np.uint8))
    out, _ = image.load_digit(_png(page, "JPEG", quality=75), "pen.jpg")
    assert _box(out)[0] == 20
    assert out[:, :3].max() == out[:, -3:].max() == 0  # no ringing taken for ink


def test_paper_texture_and_jpeg_ringing_are_no_ink() -> None:
    r = np.random.default_rng(3)
    ink = np.zeros((300, 400), np.float32)
    ink[60:260, 100:300] = _seven_ink(200, 14)
    texture = np.asarray(
        Image.fromarray(r.normal(0, 6, (30, 40)).astype(np.float32)).resize((400, 300)),
        np.float32,
    )
    page = 225 + texture - 200 * ink + r.normal(0, 2, ink.shape)
    img = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    out, _ = image.load_digit(_png(img, "JPEG", quality=70), "texture.jpg")
    want, _ = image.load_digit(_png(Image.fromarray((255 - 255 * ink).astype(np.uint8))), "clean")
    assert _box(out) == _box(want)
    assert _shifted_difference(out, want) < 8


def test_otsu_splits_two_levels() -> None:
    a = np.r_[np.full(500, 0.2), np.full(300, 0.8)].astype(np.float32)
    assert 0.2 < preprocess.otsu(a) < 0.8


def test_largest_region_keeps_the_bigger_blob() -> None:
    m = np.zeros((20, 20), bool)
    m[1:4, 1:4] = True  # 9 pixels
    m[8:18, 10:14] = True  # 40 pixels
    m[5, 15] = True
    want = np.zeros_like(m)
    want[8:18, 10:14] = True
    np.testing.assert_array_equal(preprocess.largest_region(m), want)


def _page(angle: float) -> np.ndarray:
    """A 200x160 page (0.9) with a dark '7', rotated by angle (paper all round)."""
    page = np.full((200, 160), 0.9, np.float32)
    page[50:150, 30:130] -= 0.8 * _seven_ink(100, 9)
    rot = Image.fromarray(page).rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=0.9)
    return np.asarray(rot, np.float32)


def _page_on(table: np.ndarray, angle: float, r: np.random.Generator) -> np.ndarray:
    """The page of _page pasted on the table."""
    page = np.full((200, 160), 0.9, np.float32)
    rot = Image.fromarray(_page(angle))
    mask = Image.fromarray(np.ones_like(page)).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    out = table.copy()
    y, x = int(r.integers(10, 60)), int(r.integers(10, 60))
    m = np.asarray(mask, np.float32)
    region = out[y : y + rot.height, x : x + rot.width]
    region[:] = region * (1 - m) + np.asarray(rot, np.float32) * m
    return out


def _tables() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:320, 0:320].astype(np.float32)
    return {
        "dark": np.full((320, 320), 0.15, np.float32),
        "wood": (0.2 + 0.12 * np.sin(0.1 * yy + 3 * np.sin(0.01 * xx)) ** 2).astype(np.float32),
        "tiles": (0.15 + 0.25 * (((yy // 40) + (xx // 40)) % 2)).astype(np.float32),
    }


@pytest.mark.parametrize("table", ["dark", "wood", "tiles"])
@pytest.mark.parametrize("angle", [-10.0, 0.0, 7.0])
def test_page_on_a_table_is_found_before_the_ink(table: str, angle: float) -> None:
    r = np.random.default_rng(5)
    photo_ = _page_on(_tables()[table], angle, r)
    found = preprocess.find_page(photo_)
    # everything left of the page is paper now, and the ink is still there
    assert found.min() < 0.3
    assert np.abs(found[:, :5] - 0.9).max() < 0.05
    img = Image.fromarray(np.clip(photo_ * 255 + 0.5, 0, 255).astype(np.uint8))
    out, _ = image.load_digit(_png(img, "JPEG", quality=85), "table.jpg")
    want = preprocess.normalize(_page(angle))
    assert _box(out) == _box(want)
    assert _shifted_difference(out, want) < 10


@pytest.mark.parametrize(
    "picture",
    [
        _seven_ink(112, 16),  # a thick light stroke on black: the digit, not a page
        0.9 - 0.8 * _seven_ink(112, 9),  # dark ink on a page that fills the picture
    ],
    ids=["light-stroke", "page-fills-picture"],
)
def test_no_page_means_the_picture_is_kept(picture: np.ndarray) -> None:
    picture = picture.astype(np.float32)
    np.testing.assert_array_equal(preprocess.find_page(picture), picture)


@pytest.mark.parametrize("squared", [False, True])
def test_ruled_lines_go_and_the_digit_stays(squared: bool) -> None:
    on = np.zeros((300, 300), bool)
    on[::25, :] = True
    if squared:
        on[:, ::25] = True
    on[55:72, 40:260] = True  # a thick bar as wide as the lines: a digit's, not the paper's
    found = preprocess.ruled_lines(on)
    assert found[::25, 0].all()
    assert not found[55:72, 1:25].any()
    assert found[:, ::25].all() == squared


@pytest.mark.parametrize("squared", [False, True])
def test_blue_ballpoint_on_ruled_paper(squared: bool) -> None:
    ink = np.zeros((300, 300), np.float32)
    ink[50:250, 50:250] = _seven_ink(200, 5)
    lines = np.zeros((300, 300), np.float32)
    lines[10::26] = 1
    if squared:
        lines[:, 10::26] = 1
    paper_ = (
        np.array([0.97, 0.96, 0.92]) * (1 - lines[..., None])
        + np.array([0.6, 0.75, 0.95]) * lines[..., None]
    )
    rgb = paper_ * (1 - ink[..., None]) + np.array([0.1, 0.15, 0.55]) * ink[..., None]
    img = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
    out, _ = image.load_digit(_png(img, "JPEG", quality=85), "ballpoint.jpg")
    want, _ = image.load_digit(_png(Image.fromarray((255 - 255 * ink).astype(np.uint8))), "clean")
    assert _box(out) == _box(want)
    assert _shifted_difference(out, want) < 8


def test_tiny_scan_touching_its_frame_is_enlarged_with_a_margin() -> None:
    scan = np.ones((8, 8), np.float32)
    scan[:, 3:5] = 0.0  # a '1' from the top edge to the bottom edge
    scan[0, 2] = 0.0
    big = preprocess.enlarge_tiny(scan)
    assert big.shape[0] >= 2 * preprocess.TINY
    assert preprocess.border(big).min() == 1.0  # a margin of the background all round
    out = preprocess.normalize(scan)
    assert _box(out)[0] == 20


def test_digits_already_in_mnist_form_skip_the_steps_unchanged(
    sample: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    digits = sample[0]
    fast = [preprocess._mnist_form(d) for d in digits]
    assert sum(fast) > len(digits) // 2
    quick = [image.preprocess(Image.fromarray(d)) for d in digits]
    monkeypatch.setattr(preprocess, "_mnist_form", lambda d: False)
    for d, f, q in zip(digits, fast, quick, strict=True):
        full = preprocess.normalize(d.astype(np.float32) * np.float32(1 / 255))
        np.testing.assert_array_equal(q, full)
        if f:
            np.testing.assert_array_equal(d, full)


def test_eight_bit_levels_survive_the_float_round_trip() -> None:
    # what lets the 8-bit fast path skip the float conversion and still agree with it
    v = np.arange(256, dtype=np.uint8)
    g = v.astype(np.float32) * np.float32(1 / 255)
    assert float(g.max()) == 1.0
    np.testing.assert_array_equal(np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8), v)


def _gap(d: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(d.any(axis=1))
    out = d.copy()
    out[rows[len(rows) // 2]] = 0
    return out


@pytest.mark.parametrize(
    "change",
    [
        lambda d: np.roll(d, 2, axis=1),  # off-centre
        lambda d: d // 2,  # faint ink
        _gap,  # a box with a gap in it
        lambda d: np.where(np.arange(28)[None, :] == 0, 9, d).astype(np.uint8),  # grey border
    ],
    ids=["off-centre", "faint", "gap", "border"],
)
def test_near_mnist_form_goes_through_the_steps(
    change: Callable, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    d = next(d for d in sample[0] if preprocess._mnist_form(d))
    assert not preprocess._mnist_form(change(d).astype(np.uint8))


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_big_single_colour_image_has_no_digit(level: float) -> None:
    g = np.full((200, 300), level, np.float32)
    assert preprocess.otsu(g) == pytest.approx(level, abs=1 / 255)
    np.testing.assert_array_equal(preprocess.find_page(g), g)
    with pytest.raises(ImageError) as err:
        preprocess.normalize(g, name="flat.png")
    assert str(err.value) == "flat.png: no digit found (blank or single-colour image)"


@pytest.mark.parametrize("invert", ["auto", "yes", "no"])
@pytest.mark.parametrize("border", [0, 127, 128, 255])
def test_as_is_on_8_bit_grey_is_the_float_path(invert: preprocess.Invert, border: int) -> None:
    r = np.random.default_rng(border)
    d = r.integers(0, 256, (28, 28)).astype(np.uint8)
    d[:, :2] = border - 1 if border else 0  # a border whose median sits on either side of 0.5
    d[:, -2:] = border
    d[0], d[-1] = border, border - 1 if border else 0
    img = Image.fromarray(d)
    g = decode.to_gray(img)
    flip = invert == "yes" or (invert == "auto" and preprocess.median(preprocess.border(g)) > 0.5)
    want = ((1 - g if flip else g) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(image.as_is(img, invert), want)


def test_streams_open_alike_whichever_plugins_were_loaded_before() -> None:
    """Each stream's signature loads only its plugin; every format still opens as it did."""
    import subprocess
    import sys

    script = """
import io, sys
import numpy as np
from PIL import Image, ImageDraw
from mnist_infer.image import load_digit
if sys.argv[1] == "all":
    Image.init()
big = Image.new("L", (112, 112), 0)
ImageDraw.Draw(big).line([(30, 24), (82, 24), (50, 92)], fill=255, width=10)
out = []
for fmt in ("PNG", "TIFF", "JPEG", "PPM", "GIF", "BMP", "PNG"):
    buf = io.BytesIO()
    big.save(buf, fmt)
    buf.seek(0)
    out.append(load_digit(buf, fmt)[0].tobytes().hex())
buf = io.BytesIO(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(40))
try:
    load_digit(buf, "bad")
except Exception as err:
    out.append(str(err))
print("\\n".join(out))
"""

    def run(mode: str) -> str:
        r = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True
        )
        return r.stdout

    lazy, eager = run("lazy"), run("all")
    assert lazy == eager
    assert lazy.splitlines()[-1].startswith("bad: ")
