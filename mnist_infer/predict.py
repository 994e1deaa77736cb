"""The predict job: gather image files, preprocess them (in workers), classify in batches."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import numpy as np
from numpy.typing import NDArray

from mnist_infer.errors import MnistInferError
from mnist_infer.image import Digit, Invert

SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp"}
)
STDIN = "-"
POOL_AFTER = 512  # files; below this, starting worker processes costs more than it saves


class Classifier(Protocol):
    def predict(self, x: NDArray[np.float32]) -> NDArray[np.floating]: ...


@dataclass(frozen=True)
class Failure:
    """A path that could not be read; `message` starts with the path."""

    path: str
    message: str


@dataclass(frozen=True)
class Prediction:
    """Class probabilities for one image and the 28x28 digit the network saw."""

    path: str
    probs: NDArray[np.floating]
    digit: Digit
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def confidence(self) -> float:
        return float(self.probs[self.label])

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable digits with their probabilities, best first."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(int(i), float(self.probs[i])) for i in order]


def gather(inputs: Iterable[str], recursive: bool = False) -> Iterator[str | Failure]:
    """File paths in order: files as given, folders' images sorted by name; failures inline."""
    for arg in inputs:
        if arg != STDIN and os.path.isdir(arg):
            yield from _folder(arg, recursive)
        else:
            yield arg


def _folder(top: str, recursive: bool) -> Iterator[str | Failure]:
    found = 0
    subfolders = unlisted = False
    stack = [top]
    listed: set[tuple[int, int]] = set()
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
            if (st.st_dev, st.st_ino) in listed:  # a symlink back to a folder already listed
                continue
            listed.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as err:
            why = "permission denied" if isinstance(err, PermissionError) else err.strerror
            yield Failure(d, f"{d}: cannot list folder ({why or err})")
            unlisted = True
            continue
        dirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if _is_dir(e):
                subfolders = True
                dirs.append(e.path)
            elif os.path.splitext(e.name)[1].lower() in SUFFIXES:
                found += 1
                yield e.path
        if recursive:
            stack.extend(reversed(dirs))
    if not found and not unlisted:
        hint = "; add --recursive to look in subfolders" if subfolders and not recursive else ""
        kinds = ", ".join(sorted(SUFFIXES))
        yield Failure(top, f"{top}: no image files in folder (looked for {kinds}){hint}")


def _is_dir(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir()
    except OSError:  # e.g. a symlink loop: an image-like name then fails with the reason
        return False


Loaded = tuple[str, Digit | None, tuple[str, ...], str | None]  # path, digit, notes, error
Item = str | Failure | tuple[str, bytes]  # a path, a gathering failure, or stdin's bytes


def _work(item: Item, invert: Invert, raw: bool) -> Loaded:
    """Decode and preprocess one input."""
    from mnist_infer.image import load_digit

    if isinstance(item, Failure):
        return item.path, None, (), item.message
    source: str | IO[bytes]
    if isinstance(item, tuple):
        path, source = item[0], io.BytesIO(item[1])
    else:
        path = source = item
    try:
        digit, notes = load_digit(source, path, invert, raw)
    except MnistInferError as err:
        return path, None, (), str(err)
    return path, digit, tuple(notes), None


def _items(paths: Iterable[str | Failure], stdin: IO[bytes] | None) -> Iterator[Item]:
    """Inputs with `-` replaced by the bytes read from standard input (once)."""
    read = False
    for p in paths:
        if p != STDIN:
            yield p
        elif read:
            yield Failure(p, f"{p}: standard input was already read (give - once)")
        elif stdin is None:
            yield Failure(p, f"{p}: standard input is closed, expected an image on it")
        else:
            read = True
            yield p, stdin.read()


def _loaded(items: Iterator[Item], invert: Invert, raw: bool, jobs: int) -> Iterator[Loaded]:
    """Decoded digits in input order; with jobs > 1, worker processes once there are many."""
    import functools
    import itertools

    head = list(itertools.islice(items, POOL_AFTER))
    work = functools.partial(_work, invert=invert, raw=raw)
    rest = itertools.chain(head, items)
    if jobs < 2 or len(head) < POOL_AFTER or not _can_fork():
        yield from map(work, rest)
        return
    import multiprocessing as mp

    # Forked workers inherit the imported modules, so they start in milliseconds. They
    # ignore Ctrl-C: the main process handles it and stops them.
    with mp.get_context("fork").Pool(jobs, initializer=_ignore_interrupts) as pool:
        yield from pool.imap(work, rest, chunksize=32)


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def default_jobs() -> int:
    """Worker processes to use: one per CPU available to us, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


def predict_files(
    inputs: Iterable[str],
    net: Classifier,
    *,
    batch_size: int = 256,
    invert: Invert = "auto",
    raw: bool = False,
    recursive: bool = False,
    stdin: IO[bytes] | None = None,
    jobs: int = 1,
) -> Iterator[Prediction | Failure]:
    """Predictions and failures in input order; memory is bounded by the batch size."""
    pending: list[Loaded] = []
    batch = np.empty((min(batch_size, 1024), 784), np.uint8)  # grows up to batch_size
    n = 0

    def flush() -> Iterator[Prediction | Failure]:
        probs = net.predict(np.divide(batch[:n], 255, dtype=np.float32)) if n else None
        i = 0
        for path, digit, notes, error in pending:
            if digit is None:
                yield Failure(path, error or path)
            else:
                assert probs is not None
                yield Prediction(path, probs[i], digit, notes)
                i += 1

    items = _items(gather(inputs, recursive), stdin)
    for item in _loaded(items, invert, raw, jobs):
        pending.append(item)
        if item[1] is not None:
            if n == len(batch):
                batch = np.resize(batch, (min(2 * n, batch_size), 784))
            batch[n] = item[1].ravel()
            n += 1
        if len(pending) >= batch_size:
            yield from flush()
            pending.clear()
            n = 0
    yield from flush()


def load_network(path: str | os.PathLike[str] | None = None) -> Classifier:
    """The network for the weights at `path` (default: the shipped weights)."""
    from mnist_infer.network import Network
    from mnist_infer.weights import load_weights, weights_path

    return Network(load_weights(weights_path(path)))


def text_line(p: Prediction, k: int = 1) -> str:
    """`path  digit  confidence`, then `digit:probability` for the k-1 runners-up."""
    runners = "".join(f"  {d}:{q:.3f}" for d, q in p.top(k)[1:])
    return f"{p.path}  {p.label}  {p.confidence:.3f}{runners}"


def json_record(p: Prediction, k: int = 1) -> dict[str, object]:
    """One JSON object per image; `top` lists the k best when k > 1.

    A path that is not valid UTF-8 shows U+FFFD for the bytes it cannot decode, and
    `path_base64` then holds its exact bytes.
    """
    raw = os.fsencode(p.path)
    path = raw.decode("utf-8", "replace")
    rec: dict[str, object] = {
        "path": path,
        "digit": p.label,
        "confidence": round(p.confidence, 6),
    }
    if path.encode("utf-8") != raw:
        import base64

        rec["path_base64"] = base64.b64encode(raw).decode("ascii")
    if k > 1:
        rec["top"] = [{"digit": d, "probability": round(q, 6)} for d, q in p.top(k)]
    return rec


def csv_header(k: int = 1) -> list[str]:
    """Columns: path, digit, confidence, then digit_2, probability_2, … up to k."""
    extra = [c for i in range(2, k + 1) for c in (f"digit_{i}", f"probability_{i}")]
    return ["path", "digit", "confidence", *extra]


def csv_row(p: Prediction, k: int = 1) -> list[str]:
    return [p.path, *(v for d, q in p.top(k) for v in (str(d), f"{q:.6f}"))]


class PngNamer:
    """Output names `<stem>.png` in a folder, numbered `<stem>-2.png`… when stems repeat."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.used: set[str] = set()

    @staticmethod
    def stem(path: str) -> str:
        """The name's stem the output is called after (`stdin` for standard input)."""
        return "stdin" if path == STDIN else os.path.splitext(os.path.basename(path))[0]

    def __call__(self, path: str) -> Path:
        stem = self.stem(path)
        name, i = f"{stem}.png", 1
        while name in self.used:
            i += 1
            name = f"{stem}-{i}.png"
        self.used.add(name)
        return self.folder / name
