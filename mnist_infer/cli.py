"""Command-line interface: the `mnist-infer` group, its error handling and the entry point.

Each command lives in its own module under mnist_infer/commands/.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from mnist_infer import __version__
from mnist_infer.commands.download import download
from mnist_infer.commands.evaluate import evaluate
from mnist_infer.commands.explain import explain
from mnist_infer.commands.info import info
from mnist_infer.commands.output import Failure, closed_pipe
from mnist_infer.commands.predict import predict
from mnist_infer.commands.serve import serve
from mnist_infer.commands.show import show
from mnist_infer.commands.train import train
from mnist_infer.errors import Interrupted, MnistInferError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MnistInferError as err:
            raise Failure(err) from None
        except KeyboardInterrupt:
            raise Failure(Interrupted("interrupted")) from None
        except MemoryError as err:  # numpy's message says how much and for what
            raise Failure(MnistInferError(f"not enough memory: {err}")) from None
        except OSError as err:
            closed_pipe(err)
            raise

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # --help is printed here
            return super().make_context(*args, **kwargs)
        except OSError as err:
            closed_pipe(err)
            raise


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


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _one_blas_thread() -> None:
    """Ask BLAS for one thread, for every command, before numpy loads.

    The products here are small: BLAS threads gain little on them and busy-wait beside the
    threads and processes that classify, predict and serve run of their own (train measured
    twice the CPU for the same wall time). A thread count the user set wins (these variables
    or OMP_NUM_THREADS); while classify runs threads of its own it lowers BLAS's count through
    threadpoolctl (mnist_infer.network), which would cost every start to import here.
    """
    import os

    if not any(os.environ.get(v) for v in (*BLAS_THREAD_VARIABLES, "OMP_NUM_THREADS")):
        for v in BLAS_THREAD_VARIABLES:
            os.environ[v] = "1"


for command in (download, evaluate, info, predict, explain, show, train, serve):
    cli.add_command(command)


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
