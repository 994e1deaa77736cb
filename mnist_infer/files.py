"""Writing files safely: a temporary file in the same folder, renamed into place when complete."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, BinaryIO

from mnist_infer.errors import MnistInferError


def writable_folder(path: str | os.PathLike[str]) -> Path:
    """Create the folder path if missing; raise MnistInferError unless files can be made in it.

    Checked before long work, so that it fails at once rather than after the work is done.
    """
    import tempfile

    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=d):
            pass
    except (FileExistsError, NotADirectoryError):
        file = next((p for p in (d, *d.parents) if p.exists() and not p.is_dir()), d)
        raise MnistInferError(f"cannot write to folder {d}: {file} is a file") from None
    except OSError as e:
        raise MnistInferError(f"cannot write to folder {d}: {e.strerror or e}") from None
    return d


@contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """writable_folder(path) for work that follows; folders it made go again if the work fails."""
    d = Path(path)
    made = [p for p in (d, *d.parents) if not p.exists()]  # deepest first
    writable_folder(d)
    try:
        yield d
    except BaseException:
        for p in made:
            with suppress(OSError):  # not empty after all, or gone: leave it
                p.rmdir()
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call write(f) on a temporary file beside path, then rename it over path.

    A failure or Ctrl-C leaves path as it was and no temporary file behind.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # the folder's name is taken by a file
        raise MnistInferError(f"cannot write {p}: {p.parent} is not a folder") from None
    except OSError as e:
        raise MnistInferError(f"cannot write {p}: {e.strerror or e}") from None
    # `tmp` names the temporary file from before it is created until it is renamed away, and
    # one handler covers that whole span: a KeyboardInterrupt can arrive between any two
    # bytecodes, e.g. just after the file was created and before anything else is known.
    tmp: Path | None = None
    f: BinaryIO | None = None
    try:
        while f is None:
            name = p.with_name(f".{_short(p.name)}.{os.urandom(4).hex()}.tmp")
            tmp = name
            try:
                # "x" is O_CREAT | O_EXCL and the mode 0o666, so the umask sets the permissions
                # as for any new file. The file object is made in C: should an exception drop
                # it before it is bound to f, it closes its descriptor itself.
                f = open(name, "xb")  # noqa: SIM115 # closed below
            except FileExistsError:
                tmp = None  # another writer's file: not ours to remove
        with f:
            write(f)
        os.replace(name, p)
        tmp = None
    except BaseException as e:
        if f is not None:
            f.close()
        if tmp is not None:
            with suppress(OSError):  # the error that brought us here matters more
                tmp.unlink()
        if isinstance(e, OSError):
            raise MnistInferError(f"cannot write {p}: {e.strerror or e}") from None
        raise


def _short(name: str) -> str:
    """The name itself, or a short hash of it when the temporary name would be too long.

    Any legal name (up to 255 bytes) must work, and the temporary one adds 14 bytes.
    """
    raw = os.fsencode(name)
    if len(raw) <= 200:
        return name
    import hashlib

    return hashlib.sha256(raw).hexdigest()[:16]
