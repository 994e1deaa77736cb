"""IDX files (the MNIST format): strict header checks, fast raw or gzipped reads, a writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_infer.errors import IdxFormatError

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
SIDE = 28

_KIND = {LABELS_MAGIC: "labels", IMAGES_MAGIC: "images"}
_CHUNK = 1 << 20


def read_images(path: str | os.PathLike[str], *, flatten: bool = True) -> np.ndarray:
    """Read an IDX images file: uint8 (n, 784) C-contiguous, or (n, 28, 28) if not flatten."""
    data, dims = _read(Path(path), IMAGES_MAGIC)
    return _images(path, data, dims, flatten)


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX labels file: uint8 (n,) with values 0-9."""
    data, _ = _read(Path(path), LABELS_MAGIC)
    return _labels(path, data)


def read_pair(
    images: str | os.PathLike[str], labels: str | os.PathLike[str], *, flatten: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching images and labels files; their counts must agree."""
    return _pair(read_images(images, flatten=flatten), read_labels(labels), images, labels)


def parse_pair(
    images: tuple[bytearray, str | os.PathLike[str]],
    labels: tuple[bytearray, str | os.PathLike[str]],
    *,
    flatten: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """read_pair on files already read: (bytes, path) of each, not gzipped; arrays share the
    bytes."""
    (raw_x, path_x), (raw_t, path_t) = images, labels
    data, dims = _parse(Path(path_x), raw_x, IMAGES_MAGIC)
    x = _images(path_x, data, dims, flatten)
    t = _labels(path_t, _parse(Path(path_t), raw_t, LABELS_MAGIC)[0])
    return _pair(x, t, path_x, path_t)


def _images(
    path: str | os.PathLike[str], data: np.ndarray, dims: tuple[int, ...], flatten: bool
) -> np.ndarray:
    if dims[1:] != (SIDE, SIDE):
        raise IdxFormatError(
            f"{path}: expected {SIDE}x{SIDE} images, found {dims[1]}x{dims[2]} in the header"
        )
    return data.reshape((dims[0], SIDE * SIDE) if flatten else dims)


def _labels(path: str | os.PathLike[str], data: np.ndarray) -> np.ndarray:
    if data.size and (top := int(data.max())) > 9:
        raise IdxFormatError(f"{path}: labels must be digits 0-9, found the value {top}")
    return data


def _pair(
    x: np.ndarray, t: np.ndarray, images: str | os.PathLike[str], labels: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    if len(x) != len(t):
        raise IdxFormatError(
            f"{images} holds {len(x):,} images but {labels} holds {len(t):,} labels;"
            " expected the same count"
        )
    return x, t


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped when the name ends in .gz)."""
    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8 or not 1 <= a.ndim <= 255:
        raise ValueError(
            f"write_idx needs a uint8 array with 1+ dimensions, got {a.dtype} {a.shape}"
        )
    header = bytes([0, 0, UBYTE, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    p = Path(path)
    if p.name.endswith(".gz"):
        import gzip

        with open(p, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(header)
            f.write(a.tobytes())
    else:
        with open(p, "wb") as f:
            f.write(header)
            f.write(a.tobytes())


def _read(path: Path, magic: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Check the header against `magic` and the payload length, then return (flat data, dims)."""
    try:
        with open(path, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                f.seek(0)
                return _read_gzip(path, f, magic)
            f.seek(0)
            return _read_raw(path, f, magic)
    except OSError as e:
        raise IdxFormatError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_raw(path: Path, f: BinaryIO, magic: int) -> tuple[np.ndarray, tuple[int, ...]]:
    ndim = _check_magic(path, f.read(4), magic, "")
    dims = _dims(path, f.read(4 * ndim), ndim, "")
    want = _prod(dims)
    _check_length(path, dims, want, os.fstat(f.fileno()).st_size - 4 - 4 * ndim, "")
    data = np.fromfile(f, dtype=np.uint8, count=want)
    _check_length(path, dims, want, data.size, "")  # the file may have shrunk meanwhile
    return data, dims


def _parse(path: Path, raw: bytearray, magic: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """_read_raw on a file's bytes."""
    ndim = _check_magic(path, bytes(raw[:4]), magic, "")
    dims = _dims(path, bytes(raw[4 : 4 + 4 * ndim]), ndim, "")
    want = _prod(dims)
    _check_length(path, dims, want, len(raw) - 4 - 4 * ndim, "")
    return np.frombuffer(raw, dtype=np.uint8, count=want, offset=4 + 4 * ndim), dims


def _read_gzip(path: Path, raw: BinaryIO, magic: int) -> tuple[np.ndarray, tuple[int, ...]]:
    import gzip
    import zlib

    where = " (after gunzip)"
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            ndim = _check_magic(path, f.read(4), magic, where)
            dims = _dims(path, f.read(4 * ndim), ndim, where)
            want = _prod(dims)
            buf = bytearray()
            # Read in chunks (never one read of a size taken from an untrusted header).
            while len(buf) <= want and (chunk := f.read(_CHUNK)):
                buf += chunk
    except (OSError, EOFError, zlib.error) as e:
        raise IdxFormatError(f"{path}: corrupt gzip data ({e})") from None
    _check_length(path, dims, want, len(buf), where, more=len(buf) > want)
    return np.frombuffer(buf, dtype=np.uint8), dims


def _check_magic(path: Path, head: bytes, magic: int, where: str) -> int:
    kind = _KIND[magic]
    if not head:
        raise IdxFormatError(f"{path}: file is empty{where}; expected an IDX {kind} file")
    if len(head) < 4:
        raise IdxFormatError(
            f"{path}: header truncated{where}: expected a 4-byte magic number,"
            f" found {len(head)} bytes"
        )
    found = int.from_bytes(head, "big")
    if found != magic:
        other = _KIND.get(found)
        what = f"an IDX {other} file" if other else "not an IDX file"
        if path.name.endswith(".gz") and not where:
            what += "; named .gz but not gzip data"
        raise IdxFormatError(
            f"{path}: wrong magic number{where} 0x{found:08x} ({what});"
            f" expected 0x{magic:08x} (IDX {kind})"
        )
    return head[3]


def _dims(path: Path, raw: bytes, ndim: int, where: str) -> tuple[int, ...]:
    if len(raw) < 4 * ndim:
        raise IdxFormatError(
            f"{path}: header truncated{where}: expected {4 * ndim} bytes of dimensions,"
            f" found {len(raw)}"
        )
    return tuple(int(d) for d in np.frombuffer(raw, dtype=">u4"))


def _check_length(
    path: Path, dims: tuple[int, ...], want: int, found: int, where: str, *, more: bool = False
) -> None:
    if found == want:
        return
    shape = "x".join(str(d) for d in dims)
    state = "truncated" if found < want else "over-long"
    # A gzip stream is only read a little past the expected length, so report a lower bound.
    got = f"more than {want:,}" if more else f"{found:,}"
    raise IdxFormatError(
        f"{path}: payload {state}{where}: header says {shape} = {want:,} bytes, found {got}"
    )


def _prod(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n
