from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_infer.errors import MnistInferError
from mnist_infer.files import atomic_write


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process's umask after the test."""
    mask = os.umask(0o022)
    yield
    os.umask(mask)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    p = tmp_path / "a" / "f.bin"
    atomic_write(p, lambda f: f.write(b"data"))
    assert p.read_bytes() == b"data"
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [q.name for q in p.parent.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file(tmp_path: Path, error: BaseException) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def write(f: object) -> None:
        f.write(b"half")  # type: ignore[attr-defined]
        raise error

    with pytest.raises(type(error)):
        atomic_write(p, write)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [("file/f.bin", "{tmp}/file is not a folder"), ("file/sub/f.bin", "Not a directory")],
)
def test_an_unusable_folder_is_a_clean_error(tmp_path: Path, target: str, reason: str) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(MnistInferError) as e:
        atomic_write(tmp_path / target, lambda f: f.write(b"data"))
    assert str(e.value) == f"cannot write {tmp_path / target}: {reason.format(tmp=tmp_path)}"
