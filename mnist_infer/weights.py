"""Weights files: the textbook's pickled dict (loaded without running code) or .npz."""

from __future__ import annotations

import io
import os
import pickle
import re
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from mnist_infer.checks import check_params
from mnist_infer.errors import UnsafePickleError, UsageError, WeightsError
from mnist_infer.safe_pickle import Refused, unpickle

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_SUFFIXES = (".pkl", ".pickle")
# Far above any MLP of this kind (784-50-100-10 takes 180 KB), far below what hurts a machine.
MAX_WEIGHTS_BYTES = 256 * 2**20
MAX_NPZ_BYTES = MAX_WEIGHTS_BYTES  # the arrays of an .npz, uncompressed
MAX_NPZ_ENTRIES = 10_000
MAX_METADATA_BYTES = 2**20  # the JSON beside a weights file

# --- loading ---------------------------------------------------------------------


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


class _NotRegular(Exception):
    """The path is no regular file; the message says what it is."""


class _TooLarge(Exception):
    """The file holds more than the limit; the message says how much."""


def _check_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise _NotRegular(next((k for test, k in _KINDS if test(mode)), "not a regular file"))


def _open_regular(path: Path, limit: int) -> tuple[BinaryIO, int]:
    """A regular file of at most `limit` bytes, opened, and its size.

    Devices, FIFOs and sockets are refused before they are opened (opening a FIFO waits for a
    writer; /dev/zero never ends). The file is opened without blocking and checked again, in
    case it was replaced in between.
    """
    st = os.stat(path)
    _check_regular(st.st_mode)
    if st.st_size > limit:
        raise _TooLarge(f"{st.st_size:,}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    f = open(fd, "rb")  # noqa: SIM115  # the caller closes it
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode)
        if st.st_size > limit:
            raise _TooLarge(f"{st.st_size:,}")
    except BaseException:
        f.close()
        raise
    return f, st.st_size


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (see _open_regular); nothing
    past the limit is read."""
    f, size = _open_regular(path, limit)
    with f:
        data = f.read(size + 1)
        if len(data) <= size:
            return data
        # It grew since, or its size says nothing (as in /proc): read on, up to the limit.
        parts = [data]
        while (n := sum(map(len, parts))) <= limit and (
            more := f.read(min(1 << 20, limit + 1 - n))
        ):
            parts.append(more)
        if n > limit:
            raise _TooLarge(f"over {limit:,}")
        return b"".join(parts)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn the errors of reading a weights file into WeightsError."""
    try:
        yield
    except FileNotFoundError:
        raise WeightsError(f"cannot read weights {path}: no such file") from None
    except _NotRegular as e:
        raise WeightsError(f"cannot read weights {path}: is {e}, expected a regular file") from None
    except _TooLarge as e:
        raise WeightsError(
            f"cannot load weights {path}: the file is {e} bytes, expected at most"
            f" {MAX_WEIGHTS_BYTES:,} ({MAX_WEIGHTS_BYTES // 2**20} MiB)"
        ) from None
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None


def _read_bytes(path: Path) -> bytes:
    """The bytes of a weights file (see _read_regular), or WeightsError."""
    with _reading(path):
        data = _read_regular(path, MAX_WEIGHTS_BYTES)
    if not data:
        raise WeightsError(f"cannot load weights {path}: the file is empty")
    return data


def _load_streamed(path: Path) -> tuple[object] | None:
    """(the object in a pickle weights file,), unpickled straight from the file: one copy
    of the arrays' bytes instead of two (3 ms of a one-file predict with the default weights).

    None when the file is no pickle (an .npz) or its size is unknown (as in /proc): the
    caller then reads it whole.
    """
    with _reading(path):
        f, size = _open_regular(path, MAX_WEIGHTS_BYTES)
        with f:
            head = f.read(len(ZIP_MAGIC))
            if not size or len(head) < len(ZIP_MAGIC) or file_format(head) != "pickle":
                return None
            f.seek(0)
            return (_unpickled(f, size, head, path),)


def _from_pickle(data: bytes, path: Path) -> object:
    return _unpickled(io.BytesIO(data), len(data), data, path)


def _unpickled(f: IO[bytes], size: int, head: bytes, path: Path) -> object:
    """The object in a pickle of `size` bytes read from f (which starts with head)."""
    try:
        return unpickle(f, size)
    except Refused as e:
        raise UnsafePickleError(f"refusing to load {path}: {e}") from None
    except MemoryError:
        raise WeightsError(f"cannot load weights {path}: not enough memory") from None
    except OSError:
        raise  # the file, not its content: _reading says why
    except Exception:  # any failure while decoding untrusted bytes means a bad file
        what = "truncated or corrupt pickle" if head[:1] == b"\x80" else "not a pickle or .npz file"
        raise WeightsError(f"cannot load weights {path}: {what}") from None


def _from_npz(data: bytes, path: Path) -> dict[str, Any]:
    """The arrays of an .npz; keys that cannot be weights map to None, unread."""

    # The central directory is read whole: a million tiny entries take gigabytes.
    if (entries := data.count(b"PK\x01\x02")) > MAX_NPZ_ENTRIES:
        raise WeightsError(
            f"cannot load weights {path}: the .npz holds {entries:,} entries, expected at most"
            f" {MAX_NPZ_ENTRIES:,} (one per array)"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keep = [k for k in z.files if re.fullmatch(r"[Wb][1-9][0-9]*", k)]
            size = sum(z.zip.getinfo(f"{k}.npy").file_size for k in keep)
            if size > MAX_NPZ_BYTES:  # a few MB of zeros can inflate to gigabytes
                raise WeightsError(
                    f"cannot load weights {path}: its arrays take {size / 2**20:,.1f} MiB"
                    f" uncompressed, expected at most {MAX_NPZ_BYTES / 2**20:,.1f} MiB"
                )
            return {k: z[k] if k in keep else None for k in z.files}
    except WeightsError:
        raise
    except Exception as e:  # zipfile, npy header and object-array errors alike
        what = (
            "the .npz holds object arrays (refused: loading them could run code)"
            if "allow_pickle" in str(e)
            else "corrupt .npz archive"
        )
        raise WeightsError(f"cannot load weights {path}: {what}") from None


def file_format(data: bytes) -> str:
    """'npz' for a zip archive, else 'pickle'."""
    return "npz" if data.startswith(ZIP_MAGIC) else "pickle"


def _sha256(data: bytes) -> Any:
    """hashlib.sha256(data), but without loading OpenSSL (3 ms) when Python has its own."""
    try:
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def _load(path: Path, digest: bool = True) -> tuple[dict[str, np.ndarray], str, str]:
    """(arrays, SHA-256 or "" unless digest, format) of a weights file, validated."""
    streamed = None if digest else _load_streamed(path)
    if streamed is not None:
        params: object = streamed[0]
        fmt = "pickle"
    else:
        data = _read_bytes(path)
        fmt = file_format(data)
        params = _from_npz(data, path) if fmt == "npz" else _from_pickle(data, path)
    check_params(params, str(path))
    assert isinstance(params, dict)
    return params, _sha256(data).hexdigest() if digest else "", fmt


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """Validated arrays of a .pkl or .npz weights file and the SHA-256 of its bytes."""
    params, sha, _ = _load(Path(path))
    return params, sha


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Validated arrays W1..Wn, b1..bn of a .pkl or .npz weights file; never runs code."""
    return _load(Path(path), digest=False)[0]  # hashing megabytes is a predict's startup


# --- saving ----------------------------------------------------------------------


def metadata_path(path: str | os.PathLike[str]) -> Path:
    """Where the metadata of a weights file lives: `<path>.json`."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def save_weights(
    params: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write float32 arrays as a textbook pickle (.pkl) or .npz, metadata to `<path>.json`."""
    import json

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (*PICKLE_SUFFIXES, ".npz"):
        raise UsageError(
            f"cannot save weights as {p}: unknown suffix {p.suffix!r} (use .pkl or .npz)"
        )
    n = check_params(params, f"weights for {p}")  # also checks they fit float32
    arrays: dict[str, Any] = {
        k: np.ascontiguousarray(params[k], dtype=np.float32)
        for i in range(1, n + 1)
        for k in (f"W{i}", f"b{i}")
    }
    from mnist_infer.files import atomic_write

    meta = None if metadata is None else json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n"
    if suffix == ".npz":
        atomic_write(p, lambda f: np.savez(f, **arrays))
    else:
        atomic_write(p, lambda f: pickle.dump(arrays, f))
    side = metadata_path(p)
    if meta is None:
        side.unlink(missing_ok=True)  # a stale sidecar would describe other weights
    else:
        atomic_write(side, lambda f: f.write(meta.encode()))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata saved beside a weights file, or None if there is none."""
    import json

    side = metadata_path(path)
    try:
        text = _read_regular(side, MAX_METADATA_BYTES).decode("utf-8")
    except FileNotFoundError:
        return None
    except _NotRegular as e:
        raise WeightsError(
            f"cannot read metadata {side}: is {e}, expected a regular file"
        ) from None
    except _TooLarge as e:
        raise WeightsError(
            f"cannot read metadata {side}: the file is {e} bytes, expected at most"
            f" {MAX_METADATA_BYTES:,}"
        ) from None
    except OSError as e:
        raise WeightsError(f"cannot read metadata {side}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise WeightsError(f"cannot read metadata {side}: not UTF-8 text") from None
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise WeightsError(f"cannot read metadata {side}: invalid JSON ({e})") from None
    except RecursionError:
        raise WeightsError(f"cannot read metadata {side}: JSON nested too deep") from None
    if not isinstance(meta, dict):
        raise WeightsError(
            f"cannot read metadata {side}: expected a JSON object, found {type(meta).__name__}"
        )
    return meta


def checked_metadata(
    path: str | os.PathLike[str], sha256: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """The metadata beside a weights file (None if there is none or it cannot be used) and
    why it cannot be used; a sidecar that records another SHA-256 than `sha256` describes
    other weights (not checked without `sha256`: hashing costs a predict's start-up)."""
    try:
        meta = read_metadata(path)
    except WeightsError as e:  # the weights themselves are fine, as evaluate would find
        return None, str(e)
    recorded = meta.get("weights_sha256") if meta is not None else None
    if sha256 is not None and isinstance(recorded, str) and recorded != sha256:
        # e.g. the file was replaced, not its sidecar
        return None, (
            f"the metadata in {metadata_path(path)} describes another file (SHA-256"
            f" {recorded[:12]}…, this file's is {sha256[:12]}…)"
        )
    return meta, None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    p = Path(path)
    try:
        with open(p, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise WeightsError(f"cannot read {p}: {e.strerror or e}") from None


# --- description -----------------------------------------------------------------


class WeightsInfo:
    """What `mnist-infer info` shows about a weights file."""

    # A plain class: a NamedTuple's creation costs every command's start ~0.5 ms.
    __slots__ = (
        *("dtypes", "format", "metadata", "metadata_error"),
        *("parameters", "path", "sha256", "sizes"),
    )

    def __init__(
        self,
        *,
        path: Path,
        format: str,
        sizes: list[int],
        dtypes: list[str],
        parameters: int,
        sha256: str,
        metadata: dict[str, Any] | None,
        metadata_error: str | None = None,  # why an existing sidecar could not be read
    ) -> None:
        self.path, self.format, self.sizes, self.dtypes = path, format, sizes, dtypes
        self.parameters, self.sha256, self.metadata = parameters, sha256, metadata
        self.metadata_error = metadata_error


def describe(path: str | os.PathLike[str]) -> WeightsInfo:
    """Load and validate a weights file and summarise it; a bad sidecar is not an error."""
    p = Path(path)
    params, sha, fmt = _load(p)
    meta, problem = checked_metadata(p, sha)
    n = len(params) // 2
    ws = [params[f"W{i}"] for i in range(1, n + 1)]
    return WeightsInfo(
        path=p,
        format=fmt,
        sizes=[ws[0].shape[0]] + [w.shape[1] for w in ws],
        dtypes=sorted({str(a.dtype) for a in params.values()}),
        parameters=sum(a.size for a in params.values()),
        sha256=sha,
        metadata=meta,
        metadata_error=problem,
    )
