from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mnist_infer import __version__
from mnist_infer.cli import cli


def test_help_lists_exit_codes() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())  # click rewraps the paragraph
    assert (
        "Exit codes: 0 ok, 1 other error, 2 usage, 3 network, 4 integrity/checksum,"
        " 5 bad input file, 130 interrupted." in text
    )


def test_version() -> None:
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0
    assert __version__ in res.output


def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mnist_infer", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_ctrl_c_is_a_one_line_error_with_exit_130() -> None:
    import signal
    import time

    # `predict -` waits for an image on standard input: a command busy when Ctrl-C comes.
    cmd = [sys.executable, "-m", "mnist_infer", "predict", "-"]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores Ctrl-C and its children inherit that: give the
        # command the terminal's usual handling, as a user's shell would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3)  # past start-up (imports), into the read
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert (out, err) == ("", "Error: interrupted\n")


def test_every_option_is_explained() -> None:
    options = [
        (name, p)
        for name, command in cli.commands.items()
        for p in command.params
        if isinstance(p, click.Option)
    ]
    assert len(options) > 30
    assert [(name, p.opts) for name, p in options if not p.help] == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["--help"], ["info"]])
def test_full_disk_on_standard_output_is_a_one_line_error(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            [sys.executable, "-m", "mnist_infer", *args], stdout=full, stderr=subprocess.PIPE
        )
    assert res.returncode == 1
    assert res.stderr.decode() == "Error: cannot write the output: No space left on device\n"


def test_out_of_memory_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist_infer.weights

    def describe(path: object) -> None:
        raise MemoryError("Unable to allocate 1.00 TiB for an array with shape (2**38,)")

    monkeypatch.setattr(mnist_infer.weights, "describe", describe)
    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 1
    assert res.output == (
        "Error: not enough memory: Unable to allocate 1.00 TiB for an array with shape (2**38,)\n"
    )


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    res = CliRunner().invoke(cli, ["--version"])
    assert res.output == f"mnist-infer, version {version('mnist-infer')}\n"


@pytest.mark.parametrize(
    ("variable", "preset", "expected"),
    [
        ("OPENBLAS_NUM_THREADS", None, "1"),
        ("OPENBLAS_NUM_THREADS", "2", "2"),
        ("OMP_NUM_THREADS", "2", "2"),
    ],
    ids=["default", "user's choice", "user's OpenMP choice"],
)
def test_every_command_runs_with_one_blas_thread_unless_told(
    variable: str, preset: str | None, expected: str, tmp_path: os.PathLike[str]
) -> None:
    # A fresh process: the setting only counts before numpy loads. `info` is a command
    # that runs no threads of its own.
    code = (
        "import sys\n"
        "from mnist_infer.cli import cli\n"
        "cli.main(['info'], standalone_mode=False)\n"
        "from mnist_infer.network import _blas\n"
        "print(_blas.threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    if preset is not None:
        env[variable] = preset
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    threads = out.stdout.splitlines()[-1]
    if threads == "None":
        pytest.skip("numpy does not run on OpenBLAS here")
    assert threads == expected


def test_predicting_one_image_does_not_import_threadpoolctl(weights: Path, tmp_path: Path) -> None:
    """threadpoolctl is for classify's own threads: a small job starts without importing it."""
    from PIL import Image

    png = tmp_path / "one.png"
    Image.new("L", (28, 28), 0).save(png)
    code = (
        "import sys\n"
        "from mnist_infer.cli import cli\n"
        f"args = ['predict', '--weights', {str(weights)!r}, {str(png)!r}]\n"
        "cli.main(args, standalone_mode=False)\n"
        "print('threadpoolctl' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "False"
