"""Turn an image file into a 28x28 MNIST-style digit: white ink on black, 20x20 box, centred."""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from mnist_infer.decode import WORK, box_reduce, grey8, open_image, small_png, to_gray
from mnist_infer.preprocess import (
    Invert,
    border,
    grey8_as_is,
    grey8_digit,
    median,
    need_mnist_size,
    normalize,
)

if TYPE_CHECKING:
    from PIL import Image

    from mnist_infer.preprocess import Digit


def preprocess(img: Image.Image, invert: Invert = "auto", name: str = "image") -> Digit:
    """Full MNIST normalisation of a decoded image."""
    if grey8(img) and max(img.size) <= WORK:
        return grey8_digit(np.asarray(img), invert, name)
    return normalize(to_gray(box_reduce(img), name), invert, name)


def as_is(img: Image.Image, invert: Invert = "auto", name: str = "image") -> Digit:
    """An image that already is MNIST-format: grayscale (inverted if asked/detected), 28x28."""
    need_mnist_size(img.size[::-1], name)
    if grey8(img):
        return grey8_as_is(np.asarray(img), invert, name)
    g = to_gray(img, name)
    if invert == "yes" or (invert == "auto" and median(border(g)) > 0.5):
        g = 1 - g
    return (g * 255 + 0.5).astype(np.uint8)


def load_digit(
    source: str | Path | IO[bytes],
    name: str,
    invert: Invert = "auto",
    raw: bool = False,
) -> tuple[Digit, list[str]]:
    """Read an image file or stream into a (28, 28) uint8 digit plus notes for the user.

    Small 8-bit grey PNG files (MNIST digits saved as files) are read without Pillow.
    """
    grey = small_png(source)
    if grey is not None:
        return (grey8_as_is if raw else grey8_digit)(grey, invert, name), []
    img, notes = open_image(source, name)
    return (as_is if raw else preprocess)(img, invert, name), notes
