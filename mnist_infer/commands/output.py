"""What commands write besides their data: notes, JSON lines, one-line errors, closed pipes."""

from __future__ import annotations

import errno
import sys

import click

from mnist_infer.errors import MnistInferError


class Failure(click.ClickException):
    """A library error shown as a one-line `Error: …` with its documented exit code."""

    def __init__(self, err: MnistInferError) -> None:
        super().__init__(str(err))
        self.exit_code = err.exit_code  # type: ignore[misc]  # click declares it on the class


def closed_pipe(err: OSError) -> None:
    """Exit quietly if standard output's reader is gone (`| head -1`), as Unix tools do.

    Any other broken pipe is an error of its own (click would exit 1 without a word).
    """
    if err.errno != errno.EPIPE:
        return
    if _stdout_closed():
        _discard_stdout()
        raise click.exceptions.Exit(0) from None
    raise Failure(MnistInferError(f"a pipe was closed by the other side ({err})")) from None


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


def note(text: str) -> None:
    """One line of status on standard error; callers skip it under --quiet."""
    click.echo(f"Note: {escape(text)}", err=True)


def escape(text: str) -> str:
    """text with control characters and backslashes escaped as `ls -b` shows them."""
    from mnist_infer import predict

    return predict.escape(text)


def json_line(record: object) -> None:
    import json

    click.echo(json.dumps(record))
