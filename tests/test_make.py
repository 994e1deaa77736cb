"""The Makefile on a fresh clone: every target listed, and what it does without data or network."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"
FIND_DATA = ROOT / ".ci" / "find-test-data"
NAMES = [
    f"{p}-{k}-idx{d}-ubyte" for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))
]


def _targets() -> list[str]:
    return re.findall(r"^([a-z][a-z-]*):", MAKEFILE.read_text(), re.MULTILINE)


def test_help_lists_every_target() -> None:
    text = MAKEFILE.read_text()
    documented = re.findall(r"^([a-z][a-z-]*):.*## ", text, re.MULTILINE)
    assert documented == _targets()
    phony = re.search(r"^\.PHONY: (.*)$", text, re.MULTILINE)
    assert phony is not None
    assert sorted(phony.group(1).split()) == sorted(_targets())


@pytest.fixture
def make() -> str:
    path = shutil.which("make")
    if path is None:
        pytest.skip("no make here")
    return path


def test_offline_run_names_the_mirrors_variable(make: str, tmp_path: Path) -> None:
    """`make run` that cannot download says how MNIST_INFER_MIRRORS makes it work."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    tool = venv / "bin" / "mnist-infer"
    tool.write_text("#!/bin/sh\necho 'Error: could not download (offline)' >&2\nexit 3\n")
    tool.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    res = subprocess.run(
        [make, "-s", "-C", str(ROOT), "run", f"VENV={venv}"], capture_output=True, text=True
    )
    assert res.returncode != 0
    folder = "../shared/mnist" if (ROOT.parent / "shared" / "mnist").is_dir() else "DIR"
    assert res.stderr.splitlines()[:2] == [
        "Error: could not download (offline)",
        f"make run: MNIST could not be downloaded (offline?): `MNIST_INFER_MIRRORS={folder}"
        f" make run` reads it from {folder}, a folder holding the four MNIST .gz files",
    ]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A checkout's .ci folder at tmp_path/repo, so that ../shared is tmp_path/shared."""
    if not FIND_DATA.is_file():
        pytest.skip(f"{FIND_DATA} is not here (an sdist without .ci)")
    (tmp_path / "repo" / ".ci").mkdir(parents=True)
    shutil.copy(FIND_DATA, tmp_path / "repo" / ".ci")
    return tmp_path / "repo"


def _find(clone: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("MNIST_INFER_TEST_DATA",)}
    return subprocess.run(
        [sys.executable, str(clone / ".ci" / "find-test-data")],
        capture_output=True,
        text=True,
        env=base | env,
        check=True,
    )


def test_no_data_is_one_line(clone: Path, cache_dir: Path) -> None:
    res = _find(clone)
    assert res.stdout == ""
    assert res.stderr == (
        f"make test: no real MNIST (not in the cache {cache_dir}, MNIST_INFER_MIRRORS unset,"
        " no ../shared/mnist): the tests that need it skip; `mnist-infer download` (online) or"
        " MNIST_INFER_MIRRORS=DIR runs them\n"
    )


def test_the_shared_folder_beside_the_checkout(clone: Path) -> None:
    shared = clone.parent / "shared"
    (shared / "mnist").mkdir(parents=True)
    for name in NAMES:
        (shared / "mnist" / f"{name}.gz").write_bytes(b"")
    res = _find(clone)
    assert res.stdout == f"{shared}\n"
    assert res.stderr == f"make test: real MNIST from {shared} (MNIST_INFER_TEST_DATA={shared})\n"


@pytest.mark.slow
def test_the_cache_filled_from_the_mirrors_variable(
    clone: Path, cache_dir: Path, real_mnist_dir: Path
) -> None:
    res = _find(clone, MNIST_INFER_MIRRORS=str(real_mnist_dir))
    data = cache_dir / "tests"
    assert res.stdout == f"{data}\n"
    assert res.stderr.startswith(f"make test: real MNIST from the cache {cache_dir} (")
    for name in NAMES:
        with gzip.open(data / "mnist" / f"{name}.gz") as f:
            assert f.read() == (cache_dir / name).read_bytes()
    again = _find(clone)  # complete now: no mirror needed
    assert again.stdout == res.stdout
