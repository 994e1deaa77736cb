"""Decode an image file: open it with Pillow (or the small-PNG reader), grey levels in [0, 1]."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from mnist_infer import png
from mnist_infer.errors import ImageError
from mnist_infer.preprocess import median

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

    from mnist_infer.preprocess import Digit

MAX_PIXELS = 50_000_000  # larger images are refused (decompression-bomb guard)
WORK = 1024  # bigger images are first box-reduced so their longer side is at most this
FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
WIDE_SCALES = (1.0, 255.0, 1023.0, 4095.0, 16383.0, 65535.0)  # full scales of wide pixels


def open_image(source: str | Path | IO[bytes], name: str) -> tuple[Image.Image, list[str]]:
    """Open and decode the first frame, upright per EXIF; notes say what was ignored."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's complaints about odd metadata
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(source, name)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        m = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise ImageError(
            f"{name}: image too large ({size}; the limit is {MAX_PIXELS:,} pixels);"
            " scale it down or crop it to the digit first"
        ) from None
    except Image.UnidentifiedImageError:
        what = "empty file" if _is_empty(source) else f"not an image (expected {FORMATS})"
        raise ImageError(f"{name}: {what}") from None
    except Exception as err:  # Pillow's decoders raise many types for corrupt data
        raise ImageError(f"{name}: {_unreadable(err)}") from None


# Pillow's first open imports five plugins (BMP, GIF, JPEG, PPM, PNG: ~30 ms of a one-file
# predict); a stream's signature names the one it needs. Their signatures are disjoint.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", "PngImagePlugin"),
    (b"\xff\xd8\xff", "JPEG", "JpegImagePlugin"),
    (b"BM", "BMP", "BmpImagePlugin"),
    (b"GIF87a", "GIF", "GifImagePlugin"),
    (b"GIF89a", "GIF", "GifImagePlugin"),
)
_PREINIT = (
    "BmpImagePlugin",
    "GifImagePlugin",
    "JpegImagePlugin",
    "PpmImagePlugin",
    "PngImagePlugin",
)


def _open(source: str | Path | IO[bytes]) -> Image.Image:
    """Image.open, importing only the plugin a stream's signature names when it can.

    Anything else (or a file that plugin cannot open) goes the usual way, with the five
    plugins loaded first, so every file opens (or fails) as Image.open alone would do it.
    """
    from PIL import Image

    if Image._initialized < 2:
        known = _sniff(source)
        if known is not None and _imported(f"PIL.{known[1]}"):
            Image._initialized = 1  # the others are loaded below when a file needs them
            try:
                return Image.open(source, formats=[known[0]])
            except Image.UnidentifiedImageError:
                pass
        for plugin in _PREINIT:  # what Image.preinit loads
            _imported(f"PIL.{plugin}")
    return Image.open(source)


def _imported(module: str) -> bool:
    """True if the module could be imported (Image.preinit skips the plugins that cannot)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _sniff(source: str | Path | IO[bytes]) -> tuple[str, str] | None:
    """(format, plugin module) for a stream that starts with a known signature."""
    if isinstance(source, (str, Path)):
        return None  # Pillow picks the plugin by the file's suffix itself
    try:
        pos = source.tell()
        head = source.read(8)
        source.seek(pos)
    except (OSError, ValueError, AttributeError):
        return None
    return next(((f, m) for sig, f, m in _SIGNATURES if head.startswith(sig)), None)


def _decode(source: str | Path | IO[bytes], name: str) -> tuple[Image.Image, list[str]]:
    with _open(source) as img:
        notes = []
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            notes.append(f"{name}: {frames} frames (animated or multi-page); using the first")
        if img.format == "JPEG" and max(img.size) > 2 * WORK:
            # libjpeg can decode at 1/2, 1/4 or 1/8 scale: much faster for big photos.
            s = WORK / max(img.size)
            img.draft("L", (-int(-img.size[0] * s), -int(-img.size[1] * s)))
        img.load()
        # Only JPEG, TIFF, WebP and some PNGs carry an orientation tag.
        if img.format != "PNG" or "exif" in img.info:
            from PIL import ImageOps

            return ImageOps.exif_transpose(img), notes
        return (img.copy() if frames > 1 else img), notes


def _is_empty(source: str | Path | IO[bytes]) -> bool:
    """True if the file or stream holds no bytes at all."""
    if isinstance(source, (str, Path)):
        return Path(source).stat().st_size == 0
    source.seek(0, 2)
    return source.tell() == 0


def _unreadable(err: Exception) -> str:
    """Why a file could not be read or decoded, in a few words."""
    if isinstance(err, FileNotFoundError):
        return "no such file or directory"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "is a directory, expected an image file"
    if isinstance(err, OSError) and err.errno is not None:  # from the OS, not from Pillow
        return f"cannot read ({err.strerror or err})"
    detail = " ".join(str(err).split())[:200] or type(err).__name__
    return f"truncated or corrupt image ({detail})"


def to_gray(img: Image.Image, name: str = "image") -> NDArray[np.float32]:
    """Grayscale in [0, 1] as seen by a person; alpha-only content becomes full-contrast ink."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;"):
        return _scale_wide(np.asarray(img, dtype=np.float32), name)
    if mode == "L":
        if "transparency" not in img.info:
            return np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    elif mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in img.info:
        return np.asarray(img.convert("L"), dtype=np.float32) * np.float32(1 / 255)
    la = np.asarray(img.convert("RGBA").convert("LA"), dtype=np.float32) * np.float32(1 / 255)
    return _flatten_alpha(la[..., 0], la[..., 1])


def _scale_wide(a: NDArray[np.float32], name: str) -> NDArray[np.float32]:
    """16/32-bit integer or float pixels to [0, 1].

    The full scale is the smallest usual one that holds the data: 1 (float), or 8, 10,
    12, 14 or 16 bits, since sensors often store fewer bits than the file's 16.
    """
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ImageError(
            f"{name}: {bad:,} of {a.size:,} pixels are not numbers (NaN or infinite),"
            " expected finite brightness values"
        )
    lo, hi = min(float(a.min()), 0.0), float(a.max())
    hi = next((s for s in WIDE_SCALES if hi <= s), hi)
    return (a - np.float32(lo)) * np.float32(1 / (hi - lo))


def _flatten_alpha(gray: NDArray[np.float32], alpha: NDArray[np.float32]) -> NDArray[np.float32]:
    """Composite a transparent image so that its ink stays visible whatever the RGB behind it."""
    top = float(alpha.max())
    if top == 0:  # fully transparent: nothing is visible, whatever the RGB holds
        return np.zeros_like(gray)
    if float(alpha.min()) > 0.98 * top:  # no real transparency: alpha says nothing
        return gray
    solid = gray[alpha >= 0.9 * top]
    ink = median(solid)
    # Transparent background and uniformly coloured ink: the shape is the alpha channel
    # (RGB under transparent pixels is arbitrary). Keep the ink's polarity so --invert
    # means the same as for an opaque picture.
    if np.count_nonzero(np.abs(solid - ink) > 0.3) <= 0.02 * solid.size:
        a = alpha * np.float32(1 / top)
        return a if ink >= 0.5 else 1 - a
    # Mixed content (e.g. an opaque sheet with ink on a transparent canvas): fill the
    # transparency with the sheet's colour.
    return gray * alpha + np.float32(ink) * (1 - alpha)


def box_reduce(img: Image.Image) -> Image.Image:
    """Box-reduce a big image so its longer side is at most WORK pixels."""
    factor = -(-max(img.size) // WORK)
    if factor <= 1:
        return img
    if img.mode.startswith("I;"):
        img = img.convert("I")
    elif img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F") or "transparency" in img.info:
        has_alpha = "A" in img.mode or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    return img.reduce(factor)


def grey8(img: Image.Image) -> bool:
    """True for 8-bit grey pixels without transparency, as in MNIST's own files."""
    return img.mode == "L" and "transparency" not in img.info


def small_png(source: str | Path | IO[bytes]) -> Digit | None:
    """The pixels of a stream holding a small 8-bit grey PNG file; None for anything else,
    with the stream where it was."""
    if isinstance(source, (str, Path)):
        return None  # Pillow opens paths, and says why one cannot be read
    try:
        if not source.seekable():
            return None
        start = source.tell()
        data = source.read(png.MAX_BYTES + 1)
        source.seek(start)
    except (OSError, ValueError, AttributeError):
        return None
    return png.read(data) if isinstance(data, bytes) else None
