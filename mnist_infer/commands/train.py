"""`mnist-infer train`: train the network on the MNIST training split."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mnist_infer.commands.options import (
    EXIT_CODES,
    FILE,
    cache_dir_option,
    layer_sizes,
    mirror_option,
)
from mnist_infer.commands.output import note


@click.command(short_help="Train the network on the MNIST training split.", epilog=EXIT_CODES)
@click.option(
    "--hidden",
    default="50,100",
    show_default=True,
    callback=layer_sizes,
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
        on_note=None if quiet else note,
        quiet=quiet,
    )
    if not quiet:
        click.echo(f"Saved {result.path} (metadata in {result.path}.json)", err=True)
    if result.test_accuracy is not None:
        click.echo(f"Test accuracy: {result.test_accuracy:.4f}")
