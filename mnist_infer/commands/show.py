"""`mnist-infer show`: export MNIST digits as PNG files."""

from __future__ import annotations

from pathlib import Path

import click

from mnist_infer.commands.options import (
    EXIT_CODES,
    FOLDER,
    cache_dir_option,
    mirror_option,
    split_option,
)
from mnist_infer.commands.output import escape, json_line, note


@click.command(short_help="Export MNIST digits as 28x28 PNG files.", epilog=EXIT_CODES)
@split_option
@click.option(
    "--index", type=click.IntRange(min=0), default=0, show_default=True, help="First digit."
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many (fewer, with a note, where the split ends).",
)
@click.option(
    "--out",
    type=FOLDER,
    default=Path("digits"),
    show_default=True,
    help="Folder for the PNG files (created if missing; files of the same names are replaced).",
)
@click.option("--art", is_flag=True, help="Also draw each digit in the terminal.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON lines: one object per file written (--art then goes to standard error).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes.")
@mirror_option
@cache_dir_option
def show(
    split: str,
    index: int,
    count: int,
    out: Path,
    art: bool,
    as_json: bool,
    quiet: bool,
    mirrors: tuple[str, ...],
    cache_dir: Path | None,
) -> None:
    """Export MNIST digits as 28x28 PNG files, e.g. digits/test-00000-label7.png.

    Prints each written path; the files are ready for `mnist-infer predict`. --json prints
    {"path", "split", "index", "label"} per file. The split is downloaded into the cache on
    first use (a note says where). A folder that --out created is removed again if nothing
    could be written into it.

    \b
    Examples:
      mnist-infer show --count 3 --out digits
      mnist-infer show --split train --index 100 --art
    """
    from mnist_infer.export import export_digits, to_art
    from mnist_infer.files import output_folder

    with output_folder(out):
        written = export_digits(
            split, index, count, out, cache_dir, list(mirrors) or None, quiet=quiet
        )
    if len(written) < count and not quiet:
        end = index + len(written)
        note(
            f"the {split} split has {end:,} images, so --index {index} --count {count} wrote"
            f" {len(written)} (up to index {end - 1})"
        )
    for i, (path, digit) in enumerate(written, index):
        if as_json:
            label = int(path.stem.rsplit("label", 1)[1])  # the name says: <split>-<i>-label<d>
            json_line({"path": str(path), "split": split, "index": i, "label": label})
        else:
            click.echo(escape(str(path)))
        if art:
            click.echo(to_art(digit) + "\n", err=as_json)
