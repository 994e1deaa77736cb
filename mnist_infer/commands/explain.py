"""`mnist-infer explain`: one image's forward pass, step by step."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mnist_infer.commands.options import EXIT_CODES, weights_option
from mnist_infer.commands.output import note


@click.command(short_help="Show one image's forward pass, step by step.", epilog=EXIT_CODES)
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

    An image the weights' not-a-digit rule rejects is said to be no digit, with the best
    guess, as predict says it; the story is the same.

    --json prints {"path", "steps": [{"name", "op", "shape", "values", …}], "digit",
    "confidence", "is_digit", "guess", "probabilities", "contributions"}: one step per
    quantity, from x (shape [1, 784]) to y (shape [1, 10]); "digit" is null for a non-digit.

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
    if e.warning is not None:
        click.echo(f"Warning: {e.warning}; using the default not-a-digit rule", err=True)
    for text in e.notes:
        note(text)
    if as_json:
        import json

        click.echo(json.dumps(ex.to_json(e)))
    else:
        from mnist_infer.export import to_art

        click.echo(ex.to_text(e, to_art(e.digit)))
