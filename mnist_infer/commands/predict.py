"""`mnist-infer predict`: the digit in each of the user's image files, as text, JSON or CSV."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mnist_infer.commands.options import EXIT_CODES, FOLDER, not_nan, weights_option
from mnist_infer.commands.output import note


@click.command(short_help="Predict the digit in each of your own image files.", epilog=EXIT_CODES)
@click.argument("inputs", nargs=-1, required=True, metavar="FILE_OR_FOLDER...")
@weights_option(
    "Weights file (.pkl or .npz, at most 256 MiB), or `small` for the shipped 784-50-100-10"
    " weights  [default: the shipped default weights]."
)
@click.option("--recursive", "-r", is_flag=True, help="Also take images in subfolders.")
@click.option(
    "--invert",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Dark ink on a light background must be inverted; auto decides per image.",
)
@click.option(
    "--no-preprocess",
    is_flag=True,
    help="Images already are MNIST-format 28x28 digits: only convert to grayscale (and"
    " invert as --invert says).",
)
@click.option(
    "--top-k",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Also show the runners-up.",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    callback=lambda ctx, param, v: not_nan(v),
    metavar="P",
    help="Your own stricter cut: mark digits whose confidence is below P (0 to 1) as unsure.",
)
@click.option(
    "--accept-all",
    is_flag=True,
    help="Always name a digit: turn off the not-a-digit rule of the weights.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines: one object per input, failures included."
)
@click.option(
    "--csv", "as_csv", is_flag=True, help="CSV with a header row; failures fill the error column."
)
@click.option(
    "--show",
    is_flag=True,
    help="Draw the 28x28 digit the network saw (on stderr with --json/--csv, under the file name).",
)
@click.option(
    "--save-preprocessed",
    "save_dir",
    type=FOLDER,
    metavar="FOLDER",
    help="Write each 28x28 digit the network saw as FOLDER/<stem>.png (created if missing;"
    " files of the same names are replaced; a stem seen before gets <stem>-2.png, and a note).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images per forward pass (the predictions do not depend on it).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Processes decoding images (used from 512 files on)  [default: CPUs, at most 4].",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No notes on standard error (errors are still shown)."
)
def predict(
    inputs: tuple[str, ...],
    weights_path: Path | None,
    recursive: bool,
    invert: str,
    no_preprocess: bool,
    top_k: int,
    min_confidence: float | None,
    accept_all: bool,
    as_json: bool,
    as_csv: bool,
    show: bool,
    save_dir: Path | None,
    batch_size: int,
    jobs: int | None,
    quiet: bool,
) -> None:
    """Predict the digit in each image file (PNG, JPEG, BMP, GIF, TIFF, WebP).

    FILE_OR_FOLDER may be an image file, a folder (its images, sorted by name; a note
    says what else it held) or `-` for one image on standard input. Prints
    `path  digit  confidence` per image, with `unsure` at the end when a digit's
    confidence is below --min-confidence. Control characters in names are shown escaped, as `ls -b`
    does (`\\n`, `\\033`, `\\\\`); names that are not valid UTF-8 are printed byte for byte.

    An image the network does not read as a digit at all (a letter, a scribble, a tick)
    gets `path  ?  not a digit (looks most like 4, 0.410)`: the network's best guess and
    its probability. Each weights file carries its own rule for this, fitted when it was
    trained (`mnist-infer info` shows it); weights without one, such as the book's, use
    the default rule (not a digit when the best probability is below 0.5). --accept-all
    turns the rule off. A non-digit is an answer, not an error: the exit code stays 0.

    --json prints one object per input, in input order: {"path", "digit", "confidence",
    "is_digit", "guess"[, "unsure"][, "top"]} ("digit" is null for a non-digit, "guess"
    always the most probable digit), or {"path", "error", "exit_code"} for one that
    failed; a name that is not valid UTF-8 shows U+FFFD in "path" and its bytes in
    "path_base64". --csv prints path, digit, confidence, is_digit, guess[, digit_2,
    probability_2…][, unsure], error.

    Each image is normalised like MNIST: upright per EXIF, transparency flattened,
    grayscale, inverted to white on black, background removed, cropped, longer side
    scaled to 20 px and centred by centre of mass in 28x28. Animated or multi-page
    images use their first frame. Images over 50,000,000 pixels or 128 MiB, and
    devices, pipes and sockets, are refused; so is standard input over 128 MiB.

    A file that cannot be used gets `Error: <path>: <reason>` on stderr while the others
    are still predicted; the exit code is then 5.

    \b
    Examples:
      mnist-infer predict digit.png
      mnist-infer predict scans/ --recursive --min-confidence 0.9 --csv > answers.csv
    """
    import io

    if as_json and as_csv:
        raise click.UsageError("--json and --csv cannot be used together")
    fmt = "json" if as_json else "csv" if as_csv else None
    from mnist_infer import predict as pr
    from mnist_infer import records as rec
    from mnist_infer.export import save_png, to_art
    from mnist_infer.files import writable_folder

    net, rule, problem = pr.load_model(weights_path, accept_all=accept_all)
    if problem is not None and not quiet:
        click.echo(f"Warning: {problem}; using the default not-a-digit rule", err=True)
    if save_dir is not None:
        name = pr.PngNamer(writable_folder(save_dir))
    results = pr.predict_files(
        inputs,
        net,
        batch_size=batch_size,
        invert=invert,  # type: ignore[arg-type]
        raw=no_preprocess,
        recursive=recursive,
        stdin=sys.stdin.buffer if pr.STDIN in inputs and sys.stdin is not None else None,
        jobs=jobs or pr.default_jobs(),
        note=None if quiet else note,
        rule=rule,
    )
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):  # file names that are not valid UTF-8: bytes as-is
        out.reconfigure(errors="surrogateescape")
    if fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        # csv quotes a field holding "\n" but not one holding a lone "\r", which readers
        # would take for a line break: such rows are written with every field quoted.
        quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(rec.csv_header(top_k, min_confidence))
    failed = 0
    for r in results:
        if isinstance(r, pr.Failure):
            failed += 1
            click.echo(f"Error: {pr.escape(r.message)}", err=True)
        elif not quiet:
            for text in r.notes:
                note(text)
        if fmt == "json":
            import json

            out.write(json.dumps(rec.json_record(r, top_k, min_confidence)) + "\n")
        elif fmt == "csv":
            row = rec.csv_row(r, top_k, min_confidence)
            (quoted if "\r" in r.path else writer).writerow(row)
        elif isinstance(r, pr.Prediction):
            out.write(rec.text_line(r, top_k, min_confidence) + "\n")
        if isinstance(r, pr.Failure):
            continue
        if show:
            if fmt is not None:  # stdout stays machine-readable; stderr says whose digit it is
                click.echo(f"{pr.escape(r.path)}:", err=True)
            click.echo(to_art(r.digit) + "\n", err=fmt is not None)
        if save_dir is not None:
            dest = name(r.path)
            save_png(r.digit, dest)
            if dest.stem != (stem := name.stem(r.path)) and not quiet:
                note(f"{r.path}: saved as {dest} ({stem}.png was taken)")
    out.flush()
    if failed:
        raise click.exceptions.Exit(5)
