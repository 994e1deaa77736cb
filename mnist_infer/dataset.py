"""Loading verified MNIST from the cache (fetching what is missing or damaged) as arrays."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_infer.catalog import (
    CHANGING,
    DAMAGED,
    MISSING,
    FileSpec,
    file_names,
    read_verified,
    resolve_cache_dir,
    select,
)
from mnist_infer.errors import IdxFormatError, IntegrityError, MnistInferError, NetworkError
from mnist_infer.idx import parse_pair

ATTEMPTS = 3  # reads of a split's files, each after fetching what did not verify


def load_arrays(
    split: str = "test",
    cache_dir: Path | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    quiet: bool = True,
    files: Sequence[FileSpec] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 784) and labels uint8 (n,) of a split; downloads the split if missing.

    Each cached file is read once, and the arrays are made of the very bytes that were
    checked: hashed, or trusted while its size, times and inode stay those recorded when it
    last hashed right (see catalog.read_verified). A missing or damaged file is fetched
    again (waiting for a download under way in another process), then read again; if no
    mirror can replace it, IntegrityError. Unless quiet, a download says so first on
    standard error, with the cache folder.
    """
    cache = resolve_cache_dir(cache_dir)
    specs = select(split, files)
    images, labels = (cache / n for n in file_names(split))
    for attempt in range(ATTEMPTS):
        got = {s.name: read_verified(cache / s.name, s) for s in specs}
        failed = {cache / n: why for n, why in got.items() if isinstance(why, str)}
        if not failed:
            break
        if attempt == ATTEMPTS - 1:
            raise _unsettled(failed, split, cache, mirrors)
        _fetch_again(
            split,
            cache,
            mirrors,
            quiet,
            files,
            failed,
            first=attempt == 0 and len(failed) == len(specs),
        )
    try:
        return parse_pair((_bytes(got, images), images), (_bytes(got, labels), labels))
    except IdxFormatError as e:
        raise IntegrityError(
            f"cached MNIST file is damaged: {e}; run `{_repair_command(split, cache, mirrors)}`"
        ) from None


def _bytes(got: dict[str, bytearray | str], path: Path) -> bytearray:
    data = got[path.name]
    assert not isinstance(data, str)
    return data


def _fetch_again(
    split: str,
    cache: Path,
    mirrors: Sequence[str] | None,
    quiet: bool,
    files: Sequence[FileSpec] | None,
    failed: dict[Path, str],
    first: bool,
) -> None:
    """Fetch the split where files did not verify; a download under way elsewhere is waited for."""
    from mnist_infer.download import fetch

    damaged = [p for p, why in failed.items() if why != MISSING]
    missing = [p for p, why in failed.items() if why == MISSING]
    if missing and not quiet:
        print(
            _fetch_note(split, cache, missing, first and not damaged), file=sys.stderr, flush=True
        )
    try:
        results = fetch(split, cache, mirrors, quiet=quiet, files=files)
    except IntegrityError:
        raise
    except MnistInferError as e:
        if not damaged:
            raise
        # No mirror reachable (offline, say): the usual case; the mirrors tried did not
        # work, so the command names a mirror to give. Anything else (a cache that
        # cannot be written, say) is said as it is.
        if isinstance(e, NetworkError):
            why = "no mirror could replace it"
            todo = (
                f"run `{_repair_command(split, cache, None)} --mirror DIR` with DIR a"
                " folder holding the MNIST .gz files (or the URL of a mirror you can reach)"
            )
        else:
            why = f"could not be fetched again ({e})"
            todo = f"run `{_repair_command(split, cache, mirrors)}`"
        raise IntegrityError(
            f"cached MNIST file {damaged[0]} is damaged (its bytes are not the pinned"
            f" SHA-256) and {why}; {todo}"
        ) from None
    again = [r.path for r in results if not r.cached and r.path in damaged]
    if again and not quiet:
        print(f"Note: fetched {_and(again)} again: damaged in the cache", file=sys.stderr)


def _fetch_note(split: str, cache: Path, missing: list[Path], all_missing: bool) -> str:
    """What a download about to start says: the first use, or what is missing again."""
    if all_missing:
        return f"Note: downloading the MNIST {split} split into {cache} (first use)"
    return f"Note: fetching {_and(missing)} again: missing from the cache"


def _unsettled(
    failed: dict[Path, str], split: str, cache: Path, mirrors: Sequence[str] | None
) -> IntegrityError:
    """The error for files that still did not verify after being fetched again."""
    path, why = next(iter(failed.items()))
    if why in (MISSING, DAMAGED, CHANGING):
        what = {
            MISSING: "disappeared",
            DAMAGED: "was damaged",
            CHANGING: "changed while it was read",
        }[why]
        return IntegrityError(
            f"cached MNIST file {path} {what} again right after it verified:"
            f" another process is replacing or rewriting it ({ATTEMPTS} reads); wait until it"
            f" is done, or run `{_repair_command(split, cache, mirrors)}`"
        )
    return IntegrityError(
        f"cached MNIST file {path}: {why}; run `{_repair_command(split, cache, mirrors)}`"
    )


def _and(paths: list[Path]) -> str:
    names = [str(p) for p in paths]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


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
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    cache_dir: Path | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The book's `((x_train, t_train), (x_test, t_test))`, downloaded on first use.

    Images are float32 in [0, 1] if normalize, else uint8 0..255; (n, 784) if flatten, else
    (n, 1, 28, 28). Labels are uint8 digits, or float64 one-hot rows (n, 10) if one_hot_label.
    The files come from the cache (see `mnist-infer download`; $MNIST_INFER_MIRRORS names
    other sources), and a first download says so on standard error.
    """
    return tuple(  # type: ignore[return-value]
        _book_form(*load_arrays(split, cache_dir, quiet=False), normalize, flatten, one_hot_label)
        for split in ("train", "test")
    )


def _book_form(
    images: np.ndarray, labels: np.ndarray, normalize: bool, flatten: bool, one_hot_label: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(x, t) of one split in the dtypes and shapes of the book's load_mnist."""
    x: np.ndarray = images.astype(np.float32) / np.float32(255.0) if normalize else images
    if not flatten:
        x = x.reshape(-1, 1, 28, 28)
    t: np.ndarray = labels
    if one_hot_label:
        t = np.zeros((labels.size, 10))
        t[np.arange(labels.size), labels] = 1.0
    return x, t
