"""Command-line interface: Click only; each command parses options, calls the library, prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mnist_infer import __version__
from mnist_infer.errors import MnistInferError


class _Failure(click.ClickException):
    """A library error shown as a one-line `Error: …` with its documented exit code."""

    def __init__(self, err: MnistInferError) -> None:
        super().__init__(str(err))
        self.exit_code = err.exit_code


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistInferError as err:
            raise _Failure(err) from None


cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MNIST_INFER_CACHE",
    show_envvar=True,
    help="Folder for the verified MNIST files (default: the user cache folder).",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-infer")
def cli() -> None:
    """Download MNIST, load textbook-style weights safely, and run fast MLP inference.

    Exit codes: 0 ok, 1 other error, 2 usage, 3 network, 4 integrity/checksum,
    5 bad input file.
    """


# --- download ---------------------------------------------------------------


@cli.command()
@click.option(
    "--split",
    type=click.Choice(["test", "train", "all"]),
    default="all",
    show_default=True,
    help="Which files to fetch.",
)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL_OR_DIR",
    envvar="MNIST_INFER_MIRRORS",
    show_envvar=True,
    help="Base URL (http(s)://, file://) or local folder holding the .gz files; repeat to "
    "try several in order. Replaces the default mirrors.",
)
@click.option("--force", is_flag=True, help="Fetch again even if the cached files verify.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary lines.")
@cache_dir_option
def download(
    split: str, mirrors: tuple[str, ...], force: bool, quiet: bool, cache_dir: Path | None
) -> None:
    """Download MNIST into the cache, verifying every file's SHA-256."""
    from mnist_infer.download import fetch

    fetch(
        split,
        cache_dir,
        list(mirrors) or None,
        force=force,
        quiet=quiet,
        report=None if quiet else lambda r: click.echo(r.summary()),
    )


# --- evaluate ---------------------------------------------------------------


# --- info -------------------------------------------------------------------


# --- predict ----------------------------------------------------------------


# --- show -------------------------------------------------------------------


# --- train ------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mnist-infer")
