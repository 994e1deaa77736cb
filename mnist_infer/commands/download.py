"""`mnist-infer download`: fetch MNIST into the cache and verify it."""

from __future__ import annotations

from pathlib import Path

import click

from mnist_infer.commands.options import EXIT_CODES, cache_dir_option
from mnist_infer.commands.output import json_line
from mnist_infer.errors import MnistInferError


@click.command(short_help="Download MNIST into the cache and verify every file.", epilog=EXIT_CODES)
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
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines: one object per file, failures included."
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars or notes; no summary lines unless --json."
)
@cache_dir_option
def download(
    split: str,
    mirrors: tuple[str, ...],
    force: bool,
    as_json: bool,
    quiet: bool,
    cache_dir: Path | None,
) -> None:
    """Download MNIST into the cache, verifying every file's SHA-256.

    Prints one line per file: name, size, `verified` and where it came from. With --json,
    one object per file: {"name", "status", "bytes", "sha256", "source"}, status being
    "verified" (already cached), "fetched", "failed" (with "error" and "exit_code") or
    "skipped" (not tried after a failure).

    \b
    Examples:
      mnist-infer download
      mnist-infer download --split test --mirror ~/mnist-copy --json
    """
    from mnist_infer.catalog import FILES, select
    from mnist_infer.download import Result, fetch
    from mnist_infer.errors import UsageError

    sha = {f.name: f.sha256 for f in FILES}
    done: list[str] = []

    def report(r: Result) -> None:
        done.append(r.name)
        if as_json:
            status = "verified" if r.cached else "fetched"
            rec = {"name": r.name, "status": status, "bytes": r.size, "sha256": sha[r.name]}
            json_line(rec | {"source": r.source})
        elif not quiet:
            click.echo(r.summary())

    try:
        fetch(split, cache_dir, list(mirrors) or None, force=force, quiet=quiet, report=report)
    except MnistInferError as err:
        if as_json and not isinstance(err, UsageError):
            rest = [f.name for f in select(split) if f.name not in done]
            for i, name in enumerate(rest):
                fail = {"status": "failed", "error": str(err), "exit_code": err.exit_code}
                json_line({"name": name} | (fail if i == 0 else {"status": "skipped"}))
        raise
