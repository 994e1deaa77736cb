"""The predict job: gather image files, preprocess them (in workers), classify in batches."""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import numpy as np

from mnist_infer.errors import ImageError, MnistInferError
from mnist_infer.functions import softmax
from mnist_infer.image import load_digit
from mnist_infer.preprocess import Invert

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from mnist_infer.network import Network
    from mnist_infer.novelty import Rule
    from mnist_infer.preprocess import Digit

    Decoded = tuple[str, Digit | None, tuple[str, ...], str | None]  # path, digit, notes, error
    Loaded = tuple[str, Digit | bytes | None, tuple[str, ...], str | None]  # bytes from a worker

SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp"}
)
STDIN = "-"
POOL_AFTER = 512  # files; below this, starting worker processes costs more than it saves
MAX_FILE_BYTES = 128 * 2**20  # image files and standard input larger than this are refused


class Classifier(Protocol):
    def logits(self, x: NDArray[np.float32]) -> NDArray[np.floating]: ...


class Failure:
    """A path that could not be read; `message` starts with the path."""

    __slots__ = ("exit_code", "message", "path")

    def __init__(self, path: str, message: str, exit_code: int = 5) -> None:
        self.path, self.message, self.exit_code = path, message, exit_code

    def __repr__(self) -> str:
        return f"Failure({self.path!r}, {self.message!r}, {self.exit_code})"

    @property
    def reason(self) -> str:
        """The message without the path in front."""
        head = f"{self.path}: "
        return self.message[len(head) :] if self.message.startswith(head) else self.message


class Prediction:
    """Class probabilities for one image, whether it reads as a digit at all, and the 28x28
    digit the network saw."""

    # A plain class: one per file, and the dataclass machinery costs a one-file run ~2 ms.
    __slots__ = ("confidence", "digit", "is_digit", "label", "notes", "path", "probs")

    def __init__(
        self,
        path: str,
        probs: NDArray[np.floating],
        digit: Digit,
        notes: tuple[str, ...] = (),
        label: int | None = None,
        is_digit: bool = True,
    ) -> None:
        """label: the most probable digit, when the caller has it already; is_digit: the
        not-a-digit rule's verdict (novelty.Rule)."""
        self.path, self.probs, self.digit, self.notes = path, probs, digit, notes
        self.label = int(probs.argmax()) if label is None else label
        self.confidence = float(probs[self.label])
        self.is_digit = is_digit

    def __repr__(self) -> str:
        what = "digit" if self.is_digit else "not a digit, guess"
        return f"Prediction({self.path!r}, {what}={self.label}, confidence={self.confidence:.3f})"

    @property
    def guess(self) -> int:
        """The most probable digit, whether or not the image reads as a digit."""
        return self.label

    @property
    def answer(self) -> int | None:
        """The digit named, or None when the image does not read as a digit."""
        return self.label if self.is_digit else None

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable digits with their probabilities, best first."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(int(i), float(self.probs[i])) for i in order]


Notify = Callable[[str], object]


def gather(
    inputs: Iterable[str], recursive: bool = False, note: Notify | None = None
) -> Iterator[str | Failure]:
    """File paths in order: files as given, folders' images sorted by name; failures inline.

    `note` is told, once per folder, about the files a folder scan left out.
    """
    for arg in inputs:
        if arg != STDIN and os.path.isdir(arg):
            yield from _folder(arg, recursive, note)
        else:
            yield arg


def _folder(top: str, recursive: bool, note: Notify | None = None) -> Iterator[str | Failure]:
    found = skipped = hidden = 0
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
                hidden += not _is_dir(e)
                continue
            if _is_dir(e):
                subfolders = True
                dirs.append(e.path)
            elif os.path.splitext(e.name)[1].lower() in SUFFIXES:
                found += 1
                yield e.path
            else:
                skipped += 1
        if recursive:
            stack.extend(reversed(dirs))
    if note is not None and found and (skipped or hidden):  # else the failure below says it
        note(f"{top}: skipped {_left_out(skipped, hidden)}")
    if not found and not unlisted:
        hint = "; add --recursive to look in subfolders" if subfolders and not recursive else ""
        kinds = ", ".join(sorted(SUFFIXES))
        yield Failure(top, f"{top}: no image files in folder (looked for {kinds}){hint}")


def _left_out(skipped: int, hidden: int) -> str:
    """E.g. `2 files without an image suffix and 1 hidden file`."""
    kinds = [(skipped, "file", " without an image suffix"), (hidden, "hidden file", "")]
    return " and ".join(f"{n:,} {w}{'s' if n > 1 else ''}{tail}" for n, w, tail in kinds if n)


def _is_dir(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir()
    except OSError:  # e.g. a symlink loop: an image-like name then fails with the reason
        return False


Item = str | Failure | tuple[str, bytes]  # a path, a gathering failure, or stdin's bytes


def _work(item: Item, invert: Invert, raw: bool) -> Decoded:
    """Decode and preprocess one input."""
    if isinstance(item, Failure):
        return item.path, None, (), item.message
    path = item[0] if isinstance(item, tuple) else item
    try:
        if isinstance(item, tuple):
            digit, notes = load_digit(io.BytesIO(item[1]), path, invert, raw)
        else:
            with _opened(path) as f:
                digit, notes = load_digit(path if f is None else f, path, invert, raw)
    except MnistInferError as err:
        return path, None, (), str(err)
    return path, digit, tuple(notes), None


_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _opened(path: str) -> IO[bytes] | nullcontext[None]:
    """The regular file at path, opened; its kind or size refused before any reading.

    Devices, pipes and sockets are never opened by name (a FIFO would block, /dev/zero
    never ends). When the path cannot even be looked at, or is a folder, the context gives
    None: load_digit then opens the path itself and says why that fails.
    """
    try:
        st = os.stat(path)
    except OSError:
        return nullcontext()
    if stat.S_ISDIR(st.st_mode):
        return nullcontext()
    _check_kind_and_size(path, st)
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError:
        return nullcontext()
    f = os.fdopen(fd, "rb", buffering=0)  # one read for a small PNG; Pillow reads in blocks
    try:  # swapped for something else between the two looks?
        _check_kind_and_size(path, os.fstat(fd))
    except BaseException:
        f.close()
        raise
    return f


def _check_kind_and_size(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise ImageError(f"{path}: is {kind}, expected an image file")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(
            f"{path}: file too large ({st.st_size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes)"
        )


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
            data = _read_capped(stdin)
            if data is None:
                yield Failure(
                    p,
                    f"{p}: standard input too large (more than the limit of"
                    f" {MAX_FILE_BYTES:,} bytes)",
                )
            else:
                yield p, data


def _read_capped(stream: IO[bytes]) -> bytes | None:
    """All of stream, or None (having read no more than the limit) when it is too large."""
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_FILE_BYTES:
        chunk = stream.read(min(1 << 20, MAX_FILE_BYTES + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    return None


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
        packed = functools.partial(_work_packed, invert=invert, raw=raw)
        # Chunks of 128: fewer messages each way; POOL_AFTER files still make 4 chunks.
        yield from pool.imap(packed, rest, chunksize=128)


def _work_packed(
    item: Item, invert: Invert, raw: bool
) -> tuple[str, bytes | None, tuple[str, ...], str | None]:
    """_work with the digit as its 784 bytes: a tenth of the cost of pickling an array."""
    path, digit, notes, error = _work(item, invert, raw)
    return path, None if digit is None else digit.tobytes(), notes, error


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
    note: Notify | None = None,
    rule: Rule | None = None,
) -> Iterator[Prediction | Failure]:
    """Predictions and failures in input order; memory is bounded by the batch size.

    `rule` judges each answer digit or not (None: every answer is a digit). `note` is told
    what folder scans left out (files without an image suffix, hidden files).
    """
    pending: list[Loaded] = []
    batch = np.empty((min(batch_size, 1024), 784), np.uint8)  # grows up to batch_size
    n = 0

    def flush() -> Iterator[Prediction | Failure]:
        if n:  # whole-batch steps: per-image numpy calls would cost more than the maths
            logits = net.logits(np.divide(batch[:n], 255, dtype=np.float32))
            probs = softmax(logits)
            labels = probs.argmax(axis=1).tolist()
            is_digit = [True] * n if rule is None else rule.is_digit(logits).tolist()
            digits = batch[:n].reshape(n, 28, 28).copy()
        i = 0
        for path, digit, notes, error in pending:
            if digit is None:
                yield Failure(path, error or path)
            else:
                yield Prediction(path, probs[i], digits[i], notes, labels[i], is_digit[i])
                i += 1

    items = _items(gather(inputs, recursive, note), stdin)
    for item in _loaded(items, invert, raw, jobs):
        pending.append(item)
        digit = item[1]
        if digit is not None:
            if n == len(batch):
                batch = np.resize(batch, (min(2 * n, batch_size), 784))
            batch[n] = np.frombuffer(digit, np.uint8) if isinstance(digit, bytes) else digit.ravel()
            n += 1
        if len(pending) >= batch_size:
            yield from flush()
            pending.clear()
            n = 0
    yield from flush()


def load_network(path: str | os.PathLike[str] | None = None) -> Network:
    """The network for the weights at `path` (default: the shipped weights)."""
    from mnist_infer.network import Network
    from mnist_infer.shipped import weights_path
    from mnist_infer.weights import load_weights

    return Network(load_weights(weights_path(path)), copy=False)  # arrays nobody else holds


def load_model(
    path: str | os.PathLike[str] | None = None, *, accept_all: bool = False
) -> tuple[Network, Rule | None, str | None]:
    """The network for the weights at `path` (default: the shipped weights), their
    not-a-digit rule (None with accept_all) and why their metadata could not be used, if so."""
    from mnist_infer.novelty import rule_for_weights
    from mnist_infer.shipped import weights_path

    p = weights_path(path)
    net = load_network(p)
    if accept_all:
        return net, None, None
    rule, problem = rule_for_weights(p)
    return net, rule, problem


# C0, DEL, C1 and backslash; U+DC80… are the bytes of a name that is not UTF-8.
_CONTROL = "[\x00-\x1f\x7f-\x9f\\\\\udc80-\udc9f]"  # compiled on first use
_ESCAPES = {"\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r", "\\": "\\"}


def escape(name: str) -> str:
    """The name with control characters and backslashes escaped as `ls -b` shows them.

    `\\n`, `\\r`, `\\t`… for the usual ones, `\\033` (octal bytes) for the others, `\\\\` for a
    backslash; everything else (other bytes that are not UTF-8 too) is left as it is.
    """
    if name.isprintable() and "\\" not in name:  # the usual name: nothing to escape
        return name
    return re.sub(_CONTROL, _escaped, name)


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    if c in _ESCAPES:
        return "\\" + _ESCAPES[c]
    raw = bytes([ord(c) - 0xDC00]) if c >= "\udc80" else c.encode()
    return "".join(f"\\{b:03o}" for b in raw)


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
            tail = f"-{i}.png"  # the stem is cut short if the name would pass 255 bytes
            name = os.fsdecode(os.fsencode(stem)[: 255 - len(tail)]) + tail
        self.used.add(name)
        return self.folder / name
