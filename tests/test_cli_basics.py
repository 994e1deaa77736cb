from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from mnist_infer import __version__
from mnist_infer.cli import cli


def test_help_lists_exit_codes() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    assert "Exit codes" in res.output


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
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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
