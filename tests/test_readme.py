"""The README's Python examples run and print what their comments say."""

from __future__ import annotations

import io
import re
from contextlib import chdir, redirect_stdout
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_infer.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def _promised(code: str) -> list[str]:
    """What the block's `print(...)  # OUTPUT` lines promise, in order."""
    return [m.group(1) for m in re.finditer(r"^print\(.*\)  # (.*)$", code, re.MULTILINE)]


def test_the_readme_has_python_examples_with_outputs() -> None:
    blocks = _blocks()
    assert len(blocks) >= 3
    assert all(_promised(code) for code in blocks)


@pytest.fixture
def folder(
    tmp_path: Path, real_mnist_dir: Path, reference_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """As in the README's session: the book's weights and a digit written by `show`."""
    monkeypatch.setenv("MNIST_INFER_MIRRORS", str(real_mnist_dir))
    (tmp_path / "sample_weight.pkl").symlink_to(reference_weights)
    with chdir(tmp_path):
        res = CliRunner().invoke(cli, ["show", "-q", "--count", "1", "--out", "digits"])
    assert res.exit_code == 0, res.output
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks())))
def test_python_example_prints_what_it_says(index: int, folder: Path) -> None:
    code = _blocks()[index]
    out = io.StringIO()
    with chdir(folder), redirect_stdout(out):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__main__"})
    assert out.getvalue().splitlines() == _promised(code)
