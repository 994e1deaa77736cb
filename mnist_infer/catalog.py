"""The MNIST files (names, splits, pinned sizes and SHA-256), their cache and what in it verified.

The bottom of the data modules: download.py fetches into the cache, dataset.py loads from it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mnist_infer.errors import UsageError

if TYPE_CHECKING:
    from io import RawIOBase

SPLITS = ("train", "test")
_PREFIX = {"train": "train", "test": "t10k"}


class FileSpec(NamedTuple):
    """One MNIST file: cache name (decompressed), its split, pinned gzip and raw SHA-256/size."""

    name: str
    split: str
    gz_sha256: str
    gz_size: int
    sha256: str
    size: int

    @property
    def gz_name(self) -> str:
        """The name mirrors serve it under."""
        return self.name + ".gz"


# gzip hashes as TFDS lists them; a file is accepted when its decompressed bytes match.
FILES: tuple[FileSpec, ...] = (
    FileSpec(
        "train-images-idx3-ubyte",
        "train",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        9_912_422,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        47_040_016,
    ),
    FileSpec(
        "train-labels-idx1-ubyte",
        "train",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        28_881,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        60_008,
    ),
    FileSpec(
        "t10k-images-idx3-ubyte",
        "test",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        1_648_877,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        7_840_016,
    ),
    FileSpec(
        "t10k-labels-idx1-ubyte",
        "test",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        4_542,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        10_008,
    ),
)


def file_names(split: str) -> tuple[str, str]:
    """Cache names (images, labels) of a split."""
    p = _PREFIX[_check_split(split)]
    return f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte"


def select(split: str, files: Sequence[FileSpec] | None = None) -> list[FileSpec]:
    """The specs of `split` ("train", "test" or "all") from `files` (default FILES)."""
    if split not in ("all", *SPLITS):
        raise UsageError(f"unknown split {split!r}; expected one of: test, train, all")
    return [f for f in (FILES if files is None else files) if split in ("all", f.split)]


def data_hashes(split: str) -> dict[str, str]:
    """Pinned SHA-256 of the split's decompressed files, by name."""
    return {f.name: f.sha256 for f in select(_check_split(split))}


def resolve_cache_dir(cache_dir: Path | None = None) -> Path:
    """The cache folder: the argument, else $MNIST_INFER_CACHE, else the user cache folder."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if env := os.environ.get("MNIST_INFER_CACHE"):
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mnist-infer", appauthor=False))


def _check_split(split: str) -> str:
    if split not in _PREFIX:
        raise UsageError(f"unknown split {split!r}; expected one of: test, train")
    return split


# --- what in the cache was verified ----------------------------------------------

STAMPS = ".verified"  # in the cache folder: one line per file, "name size mtime ctime inode sha256"
# A stamp is kept only for a file unchanged (ctime) for this long before it was hashed: a
# write within the file system's time granularity (up to 2 s) would leave its times as they were.
_SETTLED_NS = 2 * 10**9


def _stamp(st: os.stat_result, sha256: str) -> str:
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino} {sha256}"


def _stamps(cache: Path) -> dict[str, str]:
    """The recorded stamps by file name; whatever else is there only means hashing again."""
    try:
        # Not blocking and not whole: a FIFO or a huge file in its place must not stop loading.
        with open(os.open(cache / STAMPS, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            text = f.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


# Why a cached file's bytes were not given out.
MISSING = "missing"
DAMAGED = "damaged"  # its bytes are not the pinned ones
CHANGING = "changing"  # its bytes changed while they were read: another process is writing it


def read_verified(path: Path, spec: FileSpec, *, trust_stamp: bool = True) -> bytearray | str:
    """The cached file's bytes, read once, if they are the pinned ones of `spec`; else why not.

    The bytes given out are the bytes checked: they are hashed, or, with `trust_stamp`,
    trusted when the open file's size, times and inode were those recorded when it last
    hashed right, both before and after they were read (a write in between changes its
    times). Otherwise MISSING, DAMAGED, CHANGING, or `cannot read (reason)`. A file that
    hashes right is recorded, when the cache folder can be written to and the file did not
    change while or shortly before it was read.
    """
    import time

    start = time.time_ns()
    try:
        # Not blocking: should a FIFO have taken the file's place, do not wait on it.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            if not stat.S_ISREG(before.st_mode) or before.st_size != spec.size:
                return DAMAGED
            data = _read_exactly(f, spec.size)
            after = os.fstat(f.fileno())
    except FileNotFoundError:
        return MISSING
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    stamp = _stamp(after, spec.sha256)
    steady = stamp == _stamp(before, spec.sha256)
    if data is not None and steady and trust_stamp and _stamps(path.parent).get(path.name) == stamp:
        return data
    if data is None or sha256(data) != spec.sha256:
        return DAMAGED if steady else CHANGING
    if steady and start - after.st_ctime_ns > _SETTLED_NS:
        record(path, stamp)
    return data


def verified(path: Path, spec: FileSpec, *, trust_stamp: bool = True) -> bool:
    """True if the cached `path` holds the pinned bytes of `spec` (see read_verified)."""
    return not isinstance(read_verified(path, spec, trust_stamp=trust_stamp), str)


def sha256(data: bytes | bytearray) -> str:
    """The SHA-256 of data, in hex."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _read_exactly(f: RawIOBase, size: int) -> bytearray | None:
    """size bytes from f, or None if it holds fewer or more (it changed since it was looked at)."""
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size and (n := f.readinto(view[got:])):
        got += n
    return data if got == size and not f.read(1) else None


def record(path: Path, stamp: str) -> None:
    """Keep the stamp of `path` in the cache's list; a cache that cannot be written is fine."""
    from mnist_infer.errors import MnistInferError
    from mnist_infer.files import atomic_write

    stamps = _stamps(path.parent)
    if stamps.get(path.name) == stamp:
        return
    stamps[path.name] = stamp
    text = "".join(f"{name} {line}\n" for name, line in sorted(stamps.items()))
    with suppress(MnistInferError):  # read-only: the file is hashed again next time
        atomic_write(path.parent / STAMPS, lambda f: f.write(text.encode()))
