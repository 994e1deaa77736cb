"""Writing files safely: a temporary file in the same folder, renamed into place when complete."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mnist_infer.errors import MnistInferError


def _create_beside(p: Path) -> tuple[int, Path]:
    """A new, empty, uniquely named hidden file in p's folder, open for writing."""
    import secrets

    while True:
        tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
        try:
            # Mode 0o666 lets the umask set the permissions, as for any new file.
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call write(f) on a temporary file beside path, then rename it over path.

    A failure or Ctrl-C leaves path as it was and no temporary file behind.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_beside(p)
    except FileExistsError:  # from mkdir: the folder's name is taken by a file
        raise MnistInferError(f"cannot write {p}: {p.parent} is not a folder") from None
    except OSError as e:
        raise MnistInferError(f"cannot write {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise MnistInferError(f"cannot write {p}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
