"""`mnist-infer info`: describe a weights file."""

from __future__ import annotations

from pathlib import Path

import click

from mnist_infer.commands.options import ANY_PATH, EXIT_CODES


@click.command(
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
    ones. Also shows the weights' not-a-digit rule (see `predict --help`): the score and
    threshold from the metadata, or the default rule when the weights carry none. --json
    prints {"path", "format", "layers", "shapes", "dtypes", "parameters", "sha256",
    "not_a_digit": {"score", "threshold", "source": "weights" or "default"}, "metadata",
    "metadata_error"}.

    \b
    Examples:
      mnist-infer info
      mnist-infer info sample_weight.pkl --json
    """
    import json

    from mnist_infer.novelty import rule_from_metadata
    from mnist_infer.shipped import weights_path as resolve
    from mnist_infer.weights import describe

    d = describe(resolve(weights_path))
    rule = rule_from_metadata(d.metadata)
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
            "not_a_digit": rule.as_dict(),
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
    click.echo(f"Rule:       {rule.text()}")
    if d.metadata is None:
        click.echo("Metadata:   none")
        return
    click.echo("Metadata:")
    for key, value in d.metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        click.echo(f"  {key}: {text}")
