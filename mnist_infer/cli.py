"""Command-line interface: Click only; each command parses options, calls the library, prints."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import click

from mnist_infer import __version__
from mnist_infer.errors import Interrupted, MnistInferError


class _Failure(click.ClickException):
    """A library error shown as a one-line `Error: …` with its documented exit code."""

    def __init__(self, err: MnistInferError) -> None:
        super().__init__(str(err))
        self.exit_code = err.exit_code  # type: ignore[misc]  # click declares it on the class


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistInferError as err:
            raise _Failure(err) from None
        except KeyboardInterrupt:
            raise _Failure(Interrupted("interrupted")) from None
        except MemoryError as err:  # numpy's message says how much and for what
            raise _Failure(MnistInferError(f"not enough memory: {err}")) from None
        except OSError as err:
            _closed_pipe(err)
            raise

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # --help is printed here
            return super().make_context(*args, **kwargs)
        except OSError as err:
            _closed_pipe(err)
            raise


def _closed_pipe(err: OSError) -> None:
    """Exit quietly if standard output's reader is gone (`| head -1`), as Unix tools do.

    Any other broken pipe is an error of its own (click would exit 1 without a word).
    """
    if err.errno != errno.EPIPE:
        return
    if _stdout_closed():
        _discard_stdout()
        raise click.exceptions.Exit(0) from None
    raise _Failure(MnistInferError(f"a pipe was closed by the other side ({err})")) from None


def _stdout_closed() -> bool:
    """True if nobody reads standard output any more (a pipe whose reader has exited)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # not a file descriptor: assume so
        return True


def _discard_stdout() -> None:
    """Send what is still buffered for standard output nowhere, so exiting stays quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _not_nan(value: float | None) -> float | None:
    if value is not None and value != value:
        raise click.BadParameter(f"{value} is not a number between 0 and 1")
    return value


def _note(text: str) -> None:
    """One line of status on standard error; callers skip it under --quiet."""
    click.echo(f"Note: {_escape(text)}", err=True)


def _escape(text: str) -> str:
    from mnist_infer.predict import escape

    return escape(text)


def _json_line(record: object) -> None:
    import json

    click.echo(json.dumps(record))


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-infer")
def cli() -> None:
    """Download MNIST, load textbook-style weights safely, and run fast MLP inference.

    Data goes to standard output, notes and progress to standard error; --quiet silences
    the notes. Run `mnist-infer COMMAND --help` for a command's options and examples.

    Exit codes: 0 ok, 1 other error, 2 usage, 3 network, 4 integrity/checksum,
    5 bad input file, 130 interrupted.
    """
    _one_blas_thread()


def _one_blas_thread() -> None:
    """Ask OpenBLAS for one thread, for every command, before numpy loads.

    The products here are small: BLAS threads gain little on them and busy-wait beside the
    threads and processes that classify, predict and serve run of their own (train measured
    twice the CPU for the same wall time). OPENBLAS_NUM_THREADS set by the user wins.
    """
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# --- download ---------------------------------------------------------------


@cli.command(short_help="Download MNIST into the cache and verify every file.", epilog=EXIT_CODES)
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
            _json_line(rec | {"source": r.source})
        elif not quiet:
            click.echo(r.summary())

    try:
        fetch(split, cache_dir, list(mirrors) or None, force=force, quiet=quiet, report=report)
    except MnistInferError as err:
        if as_json and not isinstance(err, UsageError):
            rest = [f.name for f in select(split) if f.name not in done]
            for i, name in enumerate(rest):
                fail = {"status": "failed", "error": str(err), "exit_code": err.exit_code}
                _json_line({"name": name} | (fail if i == 0 else {"status": "skipped"}))
        raise


# --- evaluate ---------------------------------------------------------------


@cli.command(
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
    where). --json prints accuracy, per-class metrics, the confusion matrix, throughput and
    the weights' SHA-256 as one object; --quiet then leaves only that JSON.

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
    if limit is not None and limit > len(result.labels) and not quiet:
        _note(
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
            _note(f"mistakes.png shows the first {MAX_MISTAKES} of the {wrong:,} mistakes")


# --- info -------------------------------------------------------------------


@cli.command(
    short_help="Describe a weights file: layers, size, SHA-256 and metadata.", epilog=EXIT_CODES
)
@click.argument(
    "weights_path",
    metavar="[WEIGHTS]",
    required=False,
    type=ANY_PATH,
    envvar="MNIST_INFER_WEIGHTS",
)
@click.option("--json", "as_json", is_flag=True, help="Print the description as one JSON object.")
@click.option(
    "--quiet", "-q", is_flag=True, help="No warning about a metadata file that cannot be used."
)
def info(weights_path: Path | None, as_json: bool, quiet: bool) -> None:
    """Describe a weights file: layers, dtype, parameter count, SHA-256 and metadata.

    WEIGHTS (a .pkl or .npz, a regular file of at most 256 MiB) defaults to
    $MNIST_INFER_WEIGHTS, else the shipped weights; `small` names the shipped 784-50-100-10
    ones. --json prints
    {"path", "format", "layers", "shapes", "dtypes", "parameters", "sha256", "metadata",
    "metadata_error"}.

    \b
    Examples:
      mnist-infer info
      mnist-infer info sample_weight.pkl --json
    """
    import json

    from mnist_infer.weights import describe
    from mnist_infer.weights import weights_path as resolve

    d = describe(resolve(weights_path))
    if d.metadata_error is not None and not quiet:
        click.echo(f"Warning: {d.metadata_error}; showing the weights without it", err=True)
    if as_json:
        sizes = d.sizes
        shapes: dict[str, list[int]] = {}
        for i in range(1, len(sizes)):
            shapes |= {f"W{i}": [sizes[i - 1], sizes[i]], f"b{i}": [sizes[i]]}
        rec = {
            "path": str(d.path),
            "format": d.format,
            "layers": sizes,
            "shapes": shapes,
            "dtypes": d.dtypes,
            "parameters": d.parameters,
            "sha256": d.sha256,
            "metadata": d.metadata,
            "metadata_error": d.metadata_error,
        }
        click.echo(json.dumps(rec, indent=2))
        return
    kind = {"pickle": "pickle (the textbook's dict of arrays)", "npz": "npz (numpy zip archive)"}
    click.echo(f"File:       {d.path}")
    click.echo(f"Format:     {kind[d.format]}")
    click.echo(f"Layers:     {' → '.join(str(s) for s in d.sizes)}")
    click.echo(f"Dtype:      {', '.join(d.dtypes)}")
    click.echo(f"Parameters: {d.parameters:,}")
    click.echo(f"SHA-256:    {d.sha256}")
    if d.metadata is None:
        click.echo("Metadata:   none")
        return
    click.echo("Metadata:")
    for key, value in d.metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        click.echo(f"  {key}: {text}")


# --- predict ----------------------------------------------------------------


@cli.command(short_help="Predict the digit in each of your own image files.", epilog=EXIT_CODES)
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
    callback=lambda ctx, param, v: _not_nan(v),
    metavar="P",
    help="Mark answers whose confidence is below P (0 to 1) as unsure.",
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
    `path  digit  confidence` per image, with `unsure` at the end when the confidence is
    below --min-confidence. Control characters in names are shown escaped, as `ls -b`
    does (`\\n`, `\\033`, `\\\\`); names that are not valid UTF-8 are printed byte for byte.

    --json prints one object per input, in input order: {"path", "digit", "confidence"
    [, "unsure"][, "top"]}, or {"path", "error", "exit_code"} for one that failed; a name
    that is not valid UTF-8 shows U+FFFD in "path" and its bytes in "path_base64".
    --csv prints path, digit, confidence[, digit_2, probability_2…][, unsure], error.

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
    from mnist_infer.files import writable_folder
    from mnist_infer.image import save_png, to_art

    net = pr.load_network(weights_path)
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
        note=None if quiet else _note,
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
        writer.writerow(pr.csv_header(top_k, min_confidence))
    failed = 0
    for r in results:
        if isinstance(r, pr.Failure):
            failed += 1
            click.echo(f"Error: {pr.escape(r.message)}", err=True)
        elif not quiet:
            for note in r.notes:
                _note(note)
        if fmt == "json":
            import json

            out.write(json.dumps(pr.json_record(r, top_k, min_confidence)) + "\n")
        elif fmt == "csv":
            row = pr.csv_row(r, top_k, min_confidence)
            (quoted if "\r" in r.path else writer).writerow(row)
        elif isinstance(r, pr.Prediction):
            out.write(pr.text_line(r, top_k, min_confidence) + "\n")
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
                _note(f"{r.path}: saved as {dest} ({stem}.png was taken)")
    out.flush()
    if failed:
        raise click.exceptions.Exit(5)


# --- explain ----------------------------------------------------------------


@cli.command(short_help="Show one image's forward pass, step by step.", epilog=EXIT_CODES)
@click.argument("image", metavar="IMAGE")
@weights_option(
    "Weights file (.pkl or .npz), or `small` for the shipped 784-50-100-10 weights"
    "  [default: the shipped default weights]."
)
@click.option(
    "--invert",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Dark ink on a light background must be inverted; auto decides.",
)
@click.option(
    "--no-preprocess", is_flag=True, help="The image already is an MNIST-format 28x28 digit."
)
@click.option("--json", "as_json", is_flag=True, help="Print the forward pass as one JSON object.")
def explain(
    image: str, weights_path: Path | None, invert: str, no_preprocess: bool, as_json: bool
) -> None:
    """Show how the network reads one image: its forward pass, step by step.

    IMAGE is any image file predict takes, or `-` for standard input. Prints the 28x28
    digit the network sees, then one line per quantity of the forward pass in the book's
    notation (x, a1 = x · W1 + b1, z1 = sigmoid(a1), …, y = softmax(a3)) with its shape
    and a summary (units above 0.5, the strongest ones), the largest contributions to the
    winning digit's score, and the ten probabilities.

    --json prints {"path", "steps": [{"name", "op", "shape", "values", …}], "digit",
    "confidence", "probabilities", "contributions"}: one step per quantity, from x
    (shape [1, 784]) to y (shape [1, 10]).

    \b
    Examples:
      mnist-infer explain digit.png
      mnist-infer explain digit.png --weights small --json
    """
    from mnist_infer import explain as ex

    e = ex.explain_image(
        image,
        weights_path,
        invert=invert,  # type: ignore[arg-type]
        raw=no_preprocess,
        stdin=sys.stdin.buffer if image == "-" and sys.stdin is not None else None,
    )
    for note in e.notes:
        _note(note)
    if as_json:
        import json

        click.echo(json.dumps(ex.to_json(e)))
    else:
        from mnist_infer.image import to_art

        click.echo(ex.to_text(e, to_art(e.digit)))


# --- show -------------------------------------------------------------------


@cli.command(short_help="Export MNIST digits as 28x28 PNG files.", epilog=EXIT_CODES)
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
    from mnist_infer.files import output_folder
    from mnist_infer.image import export_digits, to_art

    with output_folder(out):
        written = export_digits(
            split, index, count, out, cache_dir, list(mirrors) or None, quiet=quiet
        )
    if len(written) < count and not quiet:
        end = index + len(written)
        _note(
            f"the {split} split has {end:,} images, so --index {index} --count {count} wrote"
            f" {len(written)} (up to index {end - 1})"
        )
    for i, (path, digit) in enumerate(written, index):
        if as_json:
            label = int(path.stem.rsplit("label", 1)[1])  # the name says: <split>-<i>-label<d>
            _json_line({"path": str(path), "split": split, "index": i, "label": label})
        else:
            click.echo(_escape(str(path)))
        if art:
            click.echo(to_art(digit) + "\n", err=as_json)


# --- train ------------------------------------------------------------------


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, found {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"layer sizes must be positive, found {value!r}")
    return sizes


@cli.command(short_help="Train the network on the MNIST training split.", epilog=EXIT_CODES)
@click.option(
    "--hidden",
    default="50,100",
    show_default=True,
    callback=_sizes,
    help="Hidden layer sizes, comma-separated (the textbook's network is 50,100).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Passes over the training images.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Training images per gradient step.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help="Base learning rate, decayed to 0 along a cosine  [default: sgd 0.1, momentum 0.05,"
    " adam 0.003].",
)
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "momentum", "adam"]),
    default="adam",
    show_default=True,
    help="How the gradients update the weights.",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="L2 penalty on the weights (not the biases).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Same seed, same machine: same weights.",
)
@click.option(
    "--augment",
    is_flag=True,
    help="Train on randomly shifted, rotated, scaled and elastically bent copies of the images.",
)
@click.option(
    "--ink-augment",
    is_flag=True,
    help="Like --augment, and also vary stroke width, slant and resolution (fat markers, thin"
    " pens, tiny scans).",
)
@click.option(
    "--no-calibrate",
    is_flag=True,
    help="Do not scale the output layer so that the confidences match the validation accuracy.",
)
@click.option(
    "--val-size",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Training images held out for validation (the test split is never trained on).",
)
@click.option(
    "--out",
    type=FILE,
    required=True,
    help="Where to write the weights: .pkl (the textbook's dict) or .npz; metadata goes to"
    " OUT.json.",
)
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option(
    "--resume", is_flag=True, help="Continue from the checkpoint that an interrupted run left."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, per-epoch lines or notes.")
@mirror_option
@cache_dir_option
def train(
    hidden: tuple[int, ...],
    epochs: int,
    batch_size: int,
    lr: float | None,
    optimizer: str,
    weight_decay: float,
    seed: int,
    augment: bool,
    ink_augment: bool,
    no_calibrate: bool,
    val_size: int,
    out: Path,
    force: bool,
    resume: bool,
    quiet: bool,
    mirrors: tuple[str, ...],
    cache_dir: Path | None,
) -> None:
    """Train the sigmoid MLP (784-HIDDEN-10) on the MNIST training split.

    Prints one line per epoch (loss, training and validation accuracy, images/s). Ctrl-C
    finishes the batch and saves a checkpoint beside OUT; --resume continues from it (a
    second Ctrl-C stops at once, keeping the last checkpoint). When done, OUT holds the
    weights and OUT.json their metadata, including the test accuracy measured afterwards.
    The epoch lines and the test accuracy go to standard output; notes (first-use download,
    where --resume continues, where the weights were saved) to standard error.

    \b
    Examples:
      mnist-infer train --out my-weights.pkl
      mnist-infer train --augment --epochs 60 --out my-weights.pkl --resume
    """
    from mnist_infer.train import TrainOptions, format_epoch
    from mnist_infer.train import train as run

    opts = TrainOptions(
        hidden=hidden,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        seed=seed,
        augment=augment,
        val_size=val_size,
        ink_augment=ink_augment,
        calibrate=not no_calibrate,
    )
    result = run(
        opts,
        out,
        cache_dir=cache_dir,
        mirrors=list(mirrors) or None,
        force=force,
        resume=resume,
        progress=not quiet and sys.stderr.isatty(),
        on_epoch=None if quiet else lambda s: click.echo(format_epoch(s, epochs)),
        on_note=None if quiet else _note,
        quiet=quiet,
    )
    if not quiet:
        click.echo(f"Saved {result.path} (metadata in {result.path}.json)", err=True)
    if result.test_accuracy is not None:
        click.echo(f"Test accuracy: {result.test_accuracy:.4f}")


def main() -> None:
    """Console-script entry point."""
    import errno
    import os
    import sys

    try:
        cli.main(prog_name="mnist-infer")
    except SystemExit as end:
        _quick_exit(end)
        raise
    except OSError as err:  # click itself handles a closed pipe (EPIPE)
        if err.filename or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise
        click.echo(f"Error: cannot write the output: {err.strerror}", err=True)
        # What is still buffered would fail again when Python flushes it on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def _quick_exit(end: SystemExit) -> None:
    """Leave at once, without the interpreter's teardown, when nothing else is running.

    Exit handlers run and the output is flushed first, as on a normal exit; what is skipped
    is freeing every module's objects one by one, and numpy's alone take about 35 ms: more
    than a one-file predict spends beyond its imports. Returns, for the normal exit, when
    another thread is alive, the status is no number or the output cannot be flushed.
    """
    import atexit
    import os
    import threading

    code = 0 if end.code is None else end.code
    if not isinstance(code, int) or threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # closed, or a reader gone: the usual way
        return
    os._exit(code)


# --- serve ------------------------------------------------------------------


_SIZE_UNITS = {"": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2}
_SIZE_UNITS["MIB"] = 1024**2


def _byte_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _SIZE_UNITS or int(m.group(1)) == 0:
        raise click.BadParameter(
            f"expected a positive size in bytes, optionally with K or M (KiB, MiB), found {value!r}"
        )
    return int(m.group(1)) * _SIZE_UNITS[unit]


@cli.command(short_help="Serve the draw-a-digit page and a JSON API.", epilog=EXIT_CODES)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but this machine's own lets others use the server.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on; 0 takes a free one.",
)
@weights_option("Weights file (.pkl or .npz)  [default: the shipped weights].")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes serving requests, each with its own threads  [default: one per CPU].",
)
@click.option(
    "--max-upload",
    default="10M",
    show_default=True,
    callback=_byte_size,
    help="Largest image accepted by /api/predict, in bytes or with K or M (KiB, MiB).",
)
def serve(
    host: str,
    port: int,
    weights_path: Path | None,
    open_browser: bool,
    workers: int | None,
    max_upload: int,
) -> None:
    """Serve the draw-a-digit page and a JSON API (/api/info, POST /api/predict).

    Draw a digit in the browser and watch the network's forward pass: the 28x28 input,
    both hidden layers and the ten probabilities. Prints the URL; Ctrl-C or SIGTERM stops
    the server (exit 0).

    GET /api/info describes the weights; POST /api/predict with an image file as the body
    (any format predict reads; ?raw=1 as --no-preprocess) answers {"digit", "confidence",
    "probabilities", "hidden", "input"}. Errors are JSON {"error"} with status 400, 404,
    405 or 413. Only this machine can connect unless --host says otherwise.

    \b
    Examples:
      mnist-infer serve --open
      curl --data-binary @digit.png http://127.0.0.1:8000/api/predict
    """
    from mnist_infer import serve as sv

    server = sv.make_server(host, port, weights_path, max_upload=max_upload)
    if server.app.metadata_warning is not None:
        click.echo(
            f"Warning: {server.app.metadata_warning}; serving the weights without it", err=True
        )
    if not sv.is_local(host):
        click.echo(
            f"Warning: listening on {host}: everyone who can reach this machine on port"
            f" {server.server_address[1]} can use the server (there is no login)",
            err=True,
        )
    click.echo(f"Serving on {server.url}  (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    if workers is None:
        from mnist_infer.network import _cpus

        workers = _cpus()  # one process tops out near one core: its Python holds one GIL
    name = sv.serve_until_stopped(server, workers)
    click.echo(f"Stopped ({name}).", err=True)
