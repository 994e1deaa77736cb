"""`mnist-infer serve`: the draw-a-digit page and the JSON API."""

from __future__ import annotations

from pathlib import Path

import click

from mnist_infer.commands.options import EXIT_CODES, byte_size, weights_option


@click.command(short_help="Serve the draw-a-digit page and a JSON API.", epilog=EXIT_CODES)
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
@weights_option(
    "Weights file (.pkl or .npz), or `small` for the shipped 784-50-100-10 weights"
    "  [default: the shipped default weights]."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Processes serving requests, each with its own event loop  [default: one per CPU].",
)
@click.option(
    "--max-upload",
    default="10M",
    show_default=True,
    callback=byte_size,
    help="Largest image accepted by /api/predict, in bytes or with K or M (KiB, MiB).",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Another name the server may be reached by (the Host header is checked against the"
    " address it listens on, to stop DNS rebinding).",
)
def serve(
    host: str,
    port: int,
    weights_path: Path | None,
    open_browser: bool,
    workers: int | None,
    max_upload: int,
    allowed_hosts: tuple[str, ...],
) -> None:
    """Serve the draw-a-digit page and a JSON API (/api/info, POST /api/predict, /api/unit).

    Draw a digit in the browser and follow the network's forward pass step by step: the
    28x28 input, every hidden unit (open one to see its weights), the scores and the ten
    probabilities. Prints the URL and the weights served; Ctrl-C or SIGTERM stops the
    server (exit 0).

    GET /api/info describes the weights (and their not-a-digit rule); POST /api/predict
    with an image file as the body (any format predict reads; ?raw=1 as --no-preprocess)
    answers {"digit", "confidence", "is_digit", "guess", "probabilities", "hidden",
    "pre_activations", "sha256", "input"}, the first four as `predict --json` gives them
    ("digit" is null when the image does not read as a digit); GET
    /api/unit?layer=L&unit=J answers {"layer", "unit", "bias", "incoming", "outgoing", …}.
    Errors are JSON {"error"} with status 400, 403, 404, 405, 408, 411, 413 or 503. Only
    this machine can connect unless --host says otherwise.

    \b
    Examples:
      mnist-infer serve --open
      curl --data-binary @digit.png http://127.0.0.1:8000/api/predict
    """
    from mnist_infer import serve as sv

    server = sv.make_server(
        host, port, weights_path, max_upload=max_upload, allowed_hosts=allowed_hosts
    )
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
    click.echo(f"Serving on {server.url} with {server.app.description}  (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    if workers is None:
        from mnist_infer.network import _cpus

        workers = _cpus()  # one process tops out near one core: its Python holds one GIL
    name = sv.serve_until_stopped(server, workers)
    click.echo(f"Stopped ({name}).", err=True)
