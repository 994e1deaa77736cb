"""`mnist-infer evaluate`: the accuracy of a weights file on an MNIST split."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mnist_infer.commands.options import (
    EXIT_CODES,
    FOLDER,
    cache_dir_option,
    mirror_option,
    split_option,
    weights_option,
)
from mnist_infer.commands.output import note


@click.command(
    short_help="Measure the accuracy of a weights file on an MNIST split.", epilog=EXIT_CODES
)
@weights_option(
    "Weights file: the textbook's pickled dict (.pkl) or .npz, a regular file of at most"
    " 256 MiB, or `small` for the shipped 784-50-100-10 weights  [default: the shipped"
    " default weights]."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Images per forward pass; the results are the same for every size (batches"
    " above 1000 run in slices of 1000).",
)
@split_option
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Print only the accuracy line (only the JSON with --json); no notes or progress.",
)
@click.option(
    "--report",
    "report_dir",
    type=FOLDER,
    help="Also write confusion.png and mistakes.png (the first 100 misclassified digits) into"
    " this folder (created if missing; files of those names are replaced).",
)
@mirror_option
@cache_dir_option
def evaluate(
    weights_path: Path | None,
    batch_size: int,
    split: str,
    limit: int | None,
    as_json: bool,
    quiet: bool,
    report_dir: Path | None,
    mirrors: tuple[str, ...],
    cache_dir: Path | None,
) -> None:
    """Classify an MNIST split and print the accuracy, per-class metrics and confusion matrix.

    The split is downloaded into the cache on first use (a note on standard error says
    where). It also says how many of the split's digits the weights' not-a-digit rule
    (see `predict --help`) would reject, and the accuracy on the others. --json prints
    accuracy, per-class metrics, the confusion matrix, throughput, the weights' SHA-256
    and "not_a_digit" {"rule", "rejected", "rejected_share", "accepted",
    "accepted_correct", "accepted_accuracy"} as one object; --quiet then leaves only that
    JSON.

    \b
    Examples:
      mnist-infer evaluate --report out/
      mnist-infer evaluate --weights sample_weight.pkl --json --quiet
    """
    import atexit
    import gc

    # This process is short-lived: collecting garbage while numpy loads, and again at exit,
    # takes a tenth of its time. Pause the collector for the command, freeze all objects at
    # exit.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    collecting = gc.isenabled()
    gc.disable()
    try:
        from contextlib import nullcontext

        from mnist_infer import evaluate as ev

        folder: Any = nullcontext()
        if report_dir is not None:
            from mnist_infer.files import output_folder

            folder = output_folder(report_dir)  # checked before the work, not after it
        with folder:
            result = ev.evaluate(
                weights_path,
                split,
                batch_size=batch_size,
                limit=limit,
                cache_dir=cache_dir,
                mirrors=list(mirrors) or None,
                progress=not quiet and sys.stderr.isatty(),
                quiet=quiet,
            )
    finally:
        if collecting:
            gc.enable()
    if result.rule_problem is not None and not quiet:
        click.echo(f"Warning: {result.rule_problem}; using the default not-a-digit rule", err=True)
    if limit is not None and limit > len(result.labels) and not quiet:
        note(
            f"--limit {limit:,} is more than the {split} split's {len(result.labels):,} images;"
            " evaluated them all"
        )
    pictures = result.write_pictures(report_dir) if report_dir is not None else []
    if as_json:
        import json

        click.echo(json.dumps(result.summary(), indent=2))
    elif quiet:
        click.echo(result.accuracy_line())
    else:
        from mnist_infer.report import format_summary

        click.echo(format_summary(result.summary()))
    if pictures and not quiet:
        from mnist_infer.report import MAX_MISTAKES

        for p in pictures:
            click.echo(f"Wrote {p}", err=True)
        wrong = len(result.labels) - result.correct
        if wrong > MAX_MISTAKES:
            note(f"mistakes.png shows the first {MAX_MISTAKES} of the {wrong:,} mistakes")
