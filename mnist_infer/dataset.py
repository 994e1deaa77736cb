"""The MNIST files, where their verified copies live, and fast loading from that cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mnist_infer.errors import IdxFormatError, IntegrityError, UsageError
from mnist_infer.idx import read_pair

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


def load_arrays(
    split: str = "test",
    cache_dir: Path | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    quiet: bool = True,
    files: Sequence[FileSpec] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 784) and labels uint8 (n,) of a split; downloads the split if missing.

    A file in the cache was verified before it was renamed into place, so loading is a
    header check and one read per file (no hashing, no decompression). Unless quiet, a
    download says so first on standard error, with the cache folder.
    """
    cache = resolve_cache_dir(cache_dir)
    images, labels = (cache / n for n in file_names(split))
    if not (images.is_file() and labels.is_file()):
        from mnist_infer.download import fetch

        if not quiet:
            import sys

            print(
                f"Note: downloading the MNIST {split} split into {cache} (first use)",
                file=sys.stderr,
                flush=True,
            )
        fetch(split, cache, mirrors, quiet=quiet, files=files)
    try:
        return read_pair(images, labels)
    except IdxFormatError as e:
        raise IntegrityError(
            f"cached MNIST file is damaged: {e}; run `{_repair_command(split, cache, mirrors)}`"
        ) from None


def _repair_command(split: str, cache: Path, mirrors: Sequence[str] | None) -> str:
    """The `download` command that replaces the split's damaged files in `cache`.

    No --force: download re-hashes what is cached and fetches again what does not verify.
    --cache-dir and --mirror only when `download` would otherwise use another folder or
    other mirrors (it reads $MNIST_INFER_CACHE and $MNIST_INFER_MIRRORS itself).
    """
    import shlex

    from mnist_infer.download import default_mirrors

    args = ["mnist-infer", "download", "--split", split]
    if cache.absolute() != resolve_cache_dir().absolute():
        args += ["--cache-dir", str(cache)]
    if mirrors is not None and list(mirrors) != default_mirrors():
        for m in mirrors:
            args += ["--mirror", m]
    return shlex.join(args)


def load_mnist(
    split: str = "test",
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Textbook-style (x, t): x float32 in [0, 1] if normalize, (n, 784) or (n, 1, 28, 28)."""
    images, labels = load_arrays(split, cache_dir)
    x: np.ndarray = images.astype(np.float32) / np.float32(255.0) if normalize else images
    if not flatten:
        x = x.reshape(-1, 1, 28, 28)
    t: np.ndarray = labels
    if one_hot_label:
        t = np.zeros((labels.size, 10), dtype=np.float32)
        t[np.arange(labels.size), labels] = 1.0
    return x, t


def _check_split(split: str) -> str:
    if split not in _PREFIX:
        raise UsageError(f"unknown split {split!r}; expected one of: test, train")
    return split
