from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnist_infer import files
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


def _created_then_interrupted(*args: Any, **kw: Any) -> Any:
    """open() whose file is created, then Ctrl-C arrives before the caller gets it."""
    open(*args, **kw).close()
    raise KeyboardInterrupt


def _interrupted(*args: Any, **kw: Any) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("module", "name", "replacement"),
    [
        (files, "open", _created_then_interrupted),  # the file exists, nothing else yet
        (files.os, "replace", _interrupted),  # written and closed, not yet renamed
    ],
)
def test_ctrl_c_at_any_moment_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any, name: str, replacement: Any
) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    monkeypatch.setattr(module, name, replacement, raising=False)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, lambda f: f.write(b"new"))
    monkeypatch.undo()
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


@pytest.mark.parametrize(
    ("folder", "reason"),
    [("file", "{tmp}/file is a file"), ("file/sub", "{tmp}/file is a file"), ("new/sub", None)],
)
def test_writable_folder(tmp_path: Path, folder: str, reason: str | None) -> None:
    (tmp_path / "file").write_text("x")
    if reason is None:
        assert files.writable_folder(tmp_path / folder).is_dir()
        assert list((tmp_path / folder).iterdir()) == []  # the probe leaves nothing behind
        return
    with pytest.raises(MnistInferError) as e:
        files.writable_folder(tmp_path / folder)
    assert (
        str(e.value) == f"cannot write to folder {tmp_path / folder}: {reason.format(tmp=tmp_path)}"
    )


def test_writable_folder_without_write_access(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write to any folder")
    d = tmp_path / "ro"
    d.mkdir(mode=0o500)
    with pytest.raises(MnistInferError) as e:
        files.writable_folder(d)
    assert str(e.value) == f"cannot write to folder {d}: Permission denied"
