"""Click parameter types, options and checks shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

# Shared: each click.Path looks its name up in the translations when it is made.
FOLDER = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)
ANY_PATH = click.Path(path_type=Path)


cache_dir_option = click.option(
    "--cache-dir",
    type=FOLDER,
    envvar="MNIST_INFER_CACHE",
    show_envvar=True,
    help="Folder for the verified MNIST files (default: the user cache folder).",
)

split_option = click.option(
    "--split",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
    help="The 10,000 test images or the 60,000 training images.",
)

mirror_option = click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL_OR_DIR",
    envvar="MNIST_INFER_MIRRORS",
    show_envvar=True,
    help="Where to fetch MNIST from if it is not cached yet (see `download --help`).",
)


def weights_option(help: str) -> Any:
    """--weights, also read from $MNIST_INFER_WEIGHTS."""
    return click.option(
        "--weights",
        "weights_path",
        type=ANY_PATH,
        envvar="MNIST_INFER_WEIGHTS",
        show_envvar=True,
        help=help,
    )


EXIT_CODES = (
    "Exit codes: 0 ok, 1 other error, 2 usage, 3 network, 4 integrity/checksum,"
    " 5 bad input file, 130 interrupted."
)


def not_nan(value: float | None) -> float | None:
    if value is not None and value != value:
        raise click.BadParameter(f"{value} is not a number between 0 and 1")
    return value


def layer_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, found {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"layer sizes must be positive, found {value!r}")
    return sizes


_SIZE_UNITS = {"": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2}
_SIZE_UNITS["MIB"] = 1024**2


def byte_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _SIZE_UNITS or int(m.group(1)) == 0:
        raise click.BadParameter(
            f"expected a positive size in bytes, optionally with K or M (KiB, MiB), found {value!r}"
        )
    return int(m.group(1)) * _SIZE_UNITS[unit]
