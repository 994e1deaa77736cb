"""Digits out: a terminal picture, PNG files, and dataset digits exported as files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist_infer.preprocess import SIZE

if TYPE_CHECKING:
    from mnist_infer.preprocess import Digit

RAMP = " .:-=+*#%@"


def to_art(digit: Digit) -> str:
    """Terminal picture of a 28x28 digit, darkest to brightest ramp.

    Each pixel is two characters wide, since a terminal cell is about twice as tall as wide.
    """
    idx = (digit.astype(np.uint16) * len(RAMP)) >> 8
    chars = np.repeat(np.array(list(RAMP))[idx], 2, axis=1)
    return "\n".join("".join(row) for row in chars)


def save_png(digit: Digit, path: Path) -> None:
    """Write a digit as an 8-bit grayscale PNG."""
    from PIL import Image

    from mnist_infer.files import atomic_write

    atomic_write(path, lambda f: Image.fromarray(digit, "L").save(f, format="PNG"))


def export_digits(
    split: str,
    start: int,
    count: int,
    out: Path,
    cache_dir: Path | None = None,
    mirrors: Sequence[str] | None = None,
    *,
    quiet: bool = True,
) -> list[tuple[Path, Digit]]:
    """Write dataset digits start…start+count-1 as `<split>-<index>-label<d>.png` files in out.

    The split is downloaded first if missing, with progress bars on a terminal unless quiet.
    """
    from mnist_infer.dataset import load_arrays
    from mnist_infer.errors import UsageError
    from mnist_infer.files import writable_folder

    images, labels = load_arrays(split, cache_dir, mirrors=mirrors, quiet=quiet)
    n = len(images)
    if start >= n:
        raise UsageError(f"--index {start} is past the end: the {split} split has {n} images")
    writable_folder(out)
    written = []
    for i in range(start, min(start + count, n)):
        digit = images[i].reshape(SIZE, SIZE)
        path = out / f"{split}-{i:05d}-label{labels[i]}.png"
        save_png(digit, path)
        written.append((path, digit))
    return written
