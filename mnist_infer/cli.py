"""Command-line interface: Click only; each command parses options, calls the library, prints."""

from __future__ import annotations

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


cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
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
    help="Where to fetch MNIST from if it is not cached yet (see `download --help`).",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-infer")
def cli() -> None:
    """Download MNIST, load textbook-style weights safely, and run fast MLP inference.

    Exit codes: 0 ok, 1 other error, 2 usage, 3 network, 4 integrity/checksum,
    5 bad input file, 130 interrupted.
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


@cli.command()
@click.option(
    "--weights",
    "weights_path",
    type=click.Path(path_type=Path),
    help="Weights file: the textbook's pickled dict (.pkl) or .npz  [default: the shipped"
    " weights/mnist-mlp-784-50-100-10.pkl].",
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
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the accuracy line.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write confusion.png and mistakes.png into this folder (created if missing;"
    " files of those names are replaced).",
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

    The split is downloaded into the cache on first use.
    """
    import atexit
    import gc
    import os
    import sys

    if "numpy" not in sys.modules:
        # classify runs its own threads; OpenBLAS's would only spin beside them at start-up.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
            )
    finally:
        if collecting:
            gc.enable()
    pictures = result.write_pictures(report_dir) if report_dir is not None else []
    if as_json:
        import json

        click.echo(json.dumps(result.summary(), indent=2))
    elif quiet:
        click.echo(result.accuracy_line())
    else:
        from mnist_infer.report import format_summary

        click.echo(format_summary(result.summary()))
        for p in pictures:
            click.echo(f"Wrote {p}")


# --- info -------------------------------------------------------------------


@cli.command()
@click.argument(
    "weights_path", metavar="[WEIGHTS]", required=False, type=click.Path(path_type=Path)
)
def info(weights_path: Path | None) -> None:
    """Describe a weights file (default: the shipped weights): layers, size, SHA-256, metadata."""
    import json

    from mnist_infer.weights import default_weights_path, describe

    d = describe(weights_path if weights_path is not None else default_weights_path())
    if d.metadata_error is not None:
        click.echo(f"Warning: {d.metadata_error}; showing the weights without it", err=True)
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


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="FILE_OR_FOLDER...")
@click.option(
    "--weights",
    "weights_path",
    type=click.Path(path_type=Path),
    help="Weights file (.pkl or .npz)  [default: the shipped weights].",
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
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one object per image.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option(
    "--show",
    is_flag=True,
    help="Draw the 28x28 digit the network saw (on stderr with --json/--csv, under the file name).",
)
@click.option(
    "--save-preprocessed",
    "save_dir",
    type=click.Path(file_okay=False, path_type=Path),
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
def predict(
    inputs: tuple[str, ...],
    weights_path: Path | None,
    recursive: bool,
    invert: str,
    no_preprocess: bool,
    top_k: int,
    as_json: bool,
    as_csv: bool,
    show: bool,
    save_dir: Path | None,
    batch_size: int,
    jobs: int | None,
) -> None:
    """Predict the digit in each image file (PNG, JPEG, BMP, GIF, TIFF, WebP).

    FILE_OR_FOLDER may be an image file, a folder (its images, sorted by name) or `-` for
    one image on standard input. Prints `path  digit  confidence` per image; `--json`
    prints JSON lines ({"path", "digit", "confidence"[, "top"]}), `--csv` a table.
    Names that are not valid UTF-8 are printed byte for byte; in JSON, "path" then
    shows U+FFFD for the odd bytes and "path_base64" holds the exact name.

    Each image is normalised like MNIST: upright per EXIF, transparency flattened,
    grayscale, inverted to white on black, background removed, cropped, longer side
    scaled to 20 px and centred by centre of mass in 28x28. Animated or multi-page
    images use their first frame. Images over 50,000,000 pixels are refused.

    A file that cannot be used gets `Error: <path>: <reason>` on stderr while the others
    are still predicted; the exit code is then 5.
    """
    import io
    import json
    import os
    import sys

    if as_json and as_csv:
        raise click.UsageError("--json and --csv cannot be used together")
    fmt = "json" if as_json else "csv" if as_csv else None
    # Batches this small gain nothing from BLAS threads, whose busy-waiting would take
    # the CPU from the processes decoding images (effective only before numpy loads).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
    )
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):  # file names that are not valid UTF-8: bytes as-is
        out.reconfigure(errors="surrogateescape")
    if fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(pr.csv_header(top_k))
    failed = 0
    for r in results:
        if isinstance(r, pr.Failure):
            failed += 1
            click.echo(f"Error: {r.message}", err=True)
            continue
        for note in r.notes:
            click.echo(f"Note: {note}", err=True)
        if fmt == "json":
            out.write(json.dumps(pr.json_record(r, top_k)) + "\n")
        elif fmt == "csv":
            writer.writerow(pr.csv_row(r, top_k))
        else:
            out.write(pr.text_line(r, top_k) + "\n")
        if show:
            if fmt is not None:  # stdout stays machine-readable; stderr says whose digit it is
                click.echo(f"{r.path}:", err=True)
            click.echo(to_art(r.digit) + "\n", err=fmt is not None)
        if save_dir is not None:
            dest = name(r.path)
            save_png(r.digit, dest)
            if dest.stem != (stem := name.stem(r.path)):
                click.echo(f"Note: {r.path}: saved as {dest} ({stem}.png was taken)", err=True)
    out.flush()
    if failed:
        raise click.exceptions.Exit(5)


# --- show -------------------------------------------------------------------


@cli.command()
@split_option
@click.option(
    "--index", type=click.IntRange(min=0), default=0, show_default=True, help="First digit."
)
@click.option(
    "--count", type=click.IntRange(min=1), default=10, show_default=True, help="How many."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("digits"),
    show_default=True,
    help="Folder for the PNG files (created if missing; files of the same names are replaced).",
)
@click.option("--art", is_flag=True, help="Also draw each digit in the terminal.")
@mirror_option
@cache_dir_option
def show(
    split: str,
    index: int,
    count: int,
    out: Path,
    art: bool,
    mirrors: tuple[str, ...],
    cache_dir: Path | None,
) -> None:
    """Export MNIST digits as 28x28 PNG files, e.g. digits/test-00000-label7.png.

    Prints each written path; the files are ready for `mnist-infer predict`.
    """
    from mnist_infer.image import export_digits, to_art

    written = export_digits(split, index, count, out, cache_dir, list(mirrors) or None, quiet=False)
    for path, digit in written:
        click.echo(str(path))
        if art:
            click.echo(to_art(digit) + "\n")


# --- train ------------------------------------------------------------------


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, found {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"layer sizes must be positive, found {value!r}")
    return sizes


@cli.command()
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
    "--val-size",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Training images held out for validation (the test split is never trained on).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the weights: .pkl (the textbook's dict) or .npz; metadata goes to"
    " OUT.json.",
)
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option(
    "--resume", is_flag=True, help="Continue from the checkpoint that an interrupted run left."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-epoch lines.")
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
    """
    import sys

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
    )
    click.echo(f"Saved {result.path} (metadata in {result.path}.json)")
    if result.test_accuracy is not None:
        click.echo(f"Test accuracy: {result.test_accuracy:.4f}")


def main() -> None:
    """Console-script entry point."""
    import errno
    import os
    import sys

    try:
        cli.main(prog_name="mnist-infer")
    except OSError as err:  # click itself handles a closed pipe (EPIPE)
        if err.filename or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise
        click.echo(f"Error: cannot write the output: {err.strerror}", err=True)
        # What is still buffered would fail again when Python flushes it on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


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


@cli.command()
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
@click.option(
    "--weights",
    "weights_path",
    type=click.Path(path_type=Path),
    help="Weights file (.pkl or .npz)  [default: the shipped weights].",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option(
    "--max-upload",
    default="10M",
    show_default=True,
    callback=_byte_size,
    help="Largest image accepted by /api/predict, in bytes or with K or M (KiB, MiB).",
)
def serve(
    host: str, port: int, weights_path: Path | None, open_browser: bool, max_upload: int
) -> None:
    """Serve the draw-a-digit page and a JSON API (/api/info, POST /api/predict).

    Draw a digit in the browser and watch the network's forward pass: the 28x28 input,
    both hidden layers and the ten probabilities. Prints the URL; Ctrl-C or SIGTERM stops
    the server (exit 0).
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
    name = sv.serve_until_stopped(server)
    click.echo(f"Stopped ({name}).", err=True)
