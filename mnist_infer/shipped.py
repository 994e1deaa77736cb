"""The weights that ship inside the package, and what --weights names."""

from __future__ import annotations

import os
from pathlib import Path

from mnist_infer.errors import WeightsError

DEFAULT_NAME = "mnist-mlp-784-800-300-10.pkl"
SMALL_NAME = "mnist-mlp-784-50-100-10.pkl"  # the book's shape
SHIPPED = {"default": DEFAULT_NAME, "small": SMALL_NAME}  # short names for --weights


def default_weights_path(check: bool = True, name: str = DEFAULT_NAME) -> Path:
    """The default (or the named) weights that ship inside the package (must exist if check)."""
    p = _shipped_folder() / name
    if check and not p.is_file():
        raise WeightsError(
            f"no default weights: {p} is missing from the installed package; reinstall"
            " mnist-infer, or pass --weights PATH"
        )
    return p


def _shipped_folder() -> Path:
    """Where the package mnist_infer._shipped is: its folder on disk when it has one (the
    same answer as importlib.resources, without that module's ~10 ms of imports)."""
    import importlib

    package = importlib.import_module("mnist_infer._shipped")
    for folder in getattr(package, "__path__", []):
        if os.path.isdir(folder):
            return Path(folder)
    from importlib.resources import files

    return Path(str(files("mnist_infer._shipped")))


def weights_path(value: str | os.PathLike[str] | None) -> Path:
    """What --weights names: a file, or a short name of shipped weights (default, small)
    when no file of that name exists; None is the default weights."""
    if value is None:
        return default_weights_path()
    p = Path(value)
    if str(value) in SHIPPED and not p.exists():
        return default_weights_path(name=SHIPPED[str(value)])
    return p
