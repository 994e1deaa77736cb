from __future__ import annotations

import subprocess
import sys

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
