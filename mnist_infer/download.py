"""Fetch MNIST files from mirrors, verify their decompressed SHA-256, install them atomically."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from mnist_infer.catalog import FileSpec, resolve_cache_dir, select, verified
from mnist_infer.errors import (
    InputFileError,
    IntegrityError,
    MnistInferError,
    NetworkError,
    UsageError,
)
from mnist_infer.idx import GZIP_MAGIC
from mnist_infer.transfer import Failed, Http

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRRORS_ENV = "MNIST_INFER_MIRRORS"
HEAD_TIMEOUT = 30.0  # seconds for connecting, the status line and the headers together
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class Result:
    """One file in the cache after `fetch`: where it is, where it came from, whether it was new."""

    name: str
    path: Path
    source: str
    size: int
    cached: bool

    def summary(self) -> str:
        """One line for the terminal."""
        state = "already cached, verified" if self.cached else "verified"
        return f"{self.name}  {self.size:,} bytes  {state}  ({self.source})"


def default_mirrors() -> list[str]:
    """$MNIST_INFER_MIRRORS (whitespace-separated) if set, else the built-in mirrors."""
    env = os.environ.get(MIRRORS_ENV, "").split()
    return env or list(DEFAULT_MIRRORS)


def fetch(
    split: str = "all",
    cache_dir: Path | None = None,
    mirrors: Sequence[str] | None = None,
    *,
    force: bool = False,
    quiet: bool = False,
    files: Sequence[FileSpec] | None = None,
    timeout: tuple[float, float] = (5.0, 30.0),
    retries: int = 3,
    backoff: float = 0.5,
    min_speed: tuple[float, float] = (1000.0, 30.0),
    head_timeout: float | None = None,
    report: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Make the split's files present and verified in the cache; return one Result per file.

    Cached files are re-hashed; bad ones are deleted, good ones kept (`force` re-fetches them,
    keeping each until its new copy is verified); when all are good and not `force`, nothing
    is written and the cache's lock is not taken, so a read-only cache works. For the others
    each mirror is tried in order; transient errors (connection, timeout, HTTP 5xx/429) are
    retried `retries` times with exponential `backoff`. A mirror that sends fewer than
    `min_speed[0]` bytes/s for `min_speed[1]` seconds is given up for the next (as curl's
    --speed-limit and --speed-time do), and so is one whose response head (connecting, the
    status line and the headers) takes over `head_timeout` seconds (default HEAD_TIMEOUT).
    A file is accepted when its decompressed bytes match the pinned size and SHA-256,
    whether the mirror serves it gzipped or not.

    Failure rule: if every mirror delivered a complete file and each failed verification
    (wrong size, checksum mismatch, undecodable gzip), raise IntegrityError (exit 4);
    if any mirror could not deliver (unreachable, timeout, HTTP error, HTML page, missing
    file), raise NetworkError (exit 3). Either message lists every mirror and its reason.
    """
    specs = select(split, files)
    bases = list(default_mirrors() if mirrors is None else mirrors)
    if not bases:
        raise UsageError("no mirrors given; pass --mirror URL_OR_DIR or unset MNIST_INFER_MIRRORS")
    for base in bases:
        _check_mirror(base)
    cache = resolve_cache_dir(cache_dir)
    if not force and (present := _present(cache, specs)) is not None:
        for r in present:
            if report is not None:
                report(r)
        return present
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable("create", cache, e) from None
    results = []
    fetcher = _Fetcher(
        cache,
        bases,
        [s.gz_name for s in specs],
        progress=not quiet and sys.stderr.isatty(),
        say=None if quiet else lambda text: print(text, file=sys.stderr, flush=True),
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        min_speed=min_speed,
        head_timeout=HEAD_TIMEOUT if head_timeout is None else head_timeout,
    )
    with _locked(cache, quiet), fetcher as f:
        _remove_partials(cache)
        good = {s.name for s in specs if verified(cache / s.name, s, trust_stamp=False)}
        for spec in specs:  # bad entries go first: a failed fetch leaves none behind
            if spec.name not in good:
                _remove_entry(cache / spec.name)
        for spec in specs:
            target = cache / spec.name
            # With force, a good entry stays until a verified copy replaces it.
            if spec.name in good and not force:
                r = Result(spec.name, target, str(target), spec.size, cached=True)
            else:
                r = Result(spec.name, target, f.get(spec), spec.size, cached=False)
            if report is not None:
                report(r)
            results.append(r)
    return results


def _present(cache: Path, specs: list[FileSpec]) -> list[Result] | None:
    """The Results if every file is cached and verifies, else None; read-only, so no lock.

    A read-only cache (shared by other users, say) is usable, as for loading: nothing is
    written, and entries are only ever renamed into place whole and verified, so a file
    read while another process downloads is complete. Anything else takes the lock.
    """
    results = []
    for spec in specs:
        target = cache / spec.name
        if not verified(target, spec, trust_stamp=False):
            return None
        results.append(Result(spec.name, target, str(target), spec.size, cached=True))
    return results


class _Fetcher:
    """Tries the mirrors for one file after another; holds the HTTP session."""

    def __init__(
        self,
        cache: Path,
        bases: list[str],
        names: list[str],
        *,
        progress: bool,
        say: Callable[[str], object] | None,
        timeout: tuple[float, float],
        retries: int,
        backoff: float,
        min_speed: tuple[float, float],
        head_timeout: float,
    ) -> None:
        self.cache, self.bases, self.names, self.progress = cache, bases, names, progress
        self.say = say  # for notes while the user waits
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.min_speed, self.head_timeout = min_speed, head_timeout
        self.failed: set[str] = set()
        self.http = Http(timeout=timeout, head_timeout=head_timeout, min_speed=min_speed)

    def __enter__(self) -> _Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, spec: FileSpec) -> str:
        """Install `spec` from the first mirror that delivers it; return the source used."""
        failures: list[tuple[str, Failed]] = []
        # A mirror that failed for an earlier file goes last, so a dead one costs time once.
        for base in sorted(self.bases, key=lambda b: b in self.failed):
            try:
                return self._from_mirror(base, spec)
            except Failed as e:
                failures.append((base, e))
                self.failed.add(base)
        raise _all_failed(spec, failures, self.names, self.cache)

    def _from_mirror(self, base: str, spec: FileSpec) -> str:
        if _is_local(base):
            return _from_folder(_folder(base), spec, self.cache)
        url = base.rstrip("/") + "/" + spec.gz_name
        attempt = 0
        while True:
            try:
                with _part(self.cache, spec.gz_name) as tmp:
                    # A gzip of incompressible data is a little larger than the data itself.
                    limit = max(spec.gz_size, spec.size + spec.size // 64 + 1024)
                    self.http.download(url, spec.gz_name, limit, tmp, progress=self.progress)
                    _install(tmp, spec, self.cache)
                return url
            except Failed as e:
                if not e.transient or attempt == self.retries:
                    if attempt:
                        raise Failed(f"{e} (after {attempt + 1} attempts)") from None
                    raise
                reason = str(e)
            except OSError as e:  # network errors are Failed by now: this is the disk
                raise _unwritable("write to", self.cache, e) from None
            delay = self.backoff * 2**attempt
            attempt += 1
            if self.say is not None:
                self.say(
                    f"{url}: {reason}; retrying in {delay:g} s"
                    f" (attempt {attempt + 1} of {self.retries + 1})"
                )
            time.sleep(delay)


def _from_folder(folder: Path, spec: FileSpec, cache: Path) -> str:
    """Install `spec` from `folder/name.gz` or `folder/name`."""
    if not folder.is_dir():
        if folder.exists():
            raise Failed(f"{folder} is not a folder")
        raise Failed(f"no such folder {folder}")
    found = [p for p in (folder / spec.gz_name, folder / spec.name) if p.is_file()]
    if not found:
        raise Failed(f"neither {spec.gz_name} nor {spec.name} is in {folder}")
    failures = []
    for p in found:
        try:
            _install(p, spec, cache)
            return str(p)
        except Failed as e:
            failures.append(e if e.unreadable else Failed(f"{p.name}: {e}", delivered=True))
    raise Failed(
        "; ".join(map(str, failures)),
        delivered=all(e.delivered for e in failures),
        unreadable=all(e.unreadable for e in failures),
    )


def _install(src: Path, spec: FileSpec, cache: Path) -> None:
    """Decompress (if gzipped) and hash `src`; rename into the cache only if it matches."""
    try:
        with open(src, "rb") as f:
            _install_from(f, spec, cache)
    except OSError as e:
        raise Failed(f"cannot read {src}: {e.strerror or e}", unreadable=True) from None


def _install_from(f: BinaryIO, spec: FileSpec, cache: Path) -> None:
    gzipped = f.read(2) == GZIP_MAGIC
    f.seek(0)
    stream: BinaryIO | gzip.GzipFile = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
    h = hashlib.sha256()
    n = 0
    try:
        with _part(cache, spec.name) as tmp:
            with open(tmp, "wb") as out:
                while chunk := _read(stream):
                    n += len(chunk)
                    if n > spec.size:
                        raise Failed(
                            f"wrong size: over {spec.size:,} bytes after decompression",
                            delivered=True,
                        )
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if n != spec.size:
                raise Failed(
                    f"wrong size: expected {spec.size:,} bytes after decompression, found {n:,}",
                    delivered=True,
                )
            if (digest := h.hexdigest()) != spec.sha256:
                raise Failed(
                    f"checksum mismatch: expected SHA-256 {spec.sha256}, found {digest}",
                    delivered=True,
                )
            os.replace(tmp, cache / spec.name)
    except OSError as e:
        raise _unwritable("write to", cache, e) from None


def _read(stream: BinaryIO | gzip.GzipFile) -> bytes:
    try:
        return stream.read(1 << 20)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise Failed(f"undecodable gzip data ({e})", delivered=True) from None
    except OSError as e:  # the disk, not the data
        raise Failed(f"read error: {e.strerror or e}", unreadable=True) from None


def _all_failed(
    spec: FileSpec, failures: list[tuple[str, Failed]], names: list[str], cache: Path
) -> MnistInferError:
    tried = "; ".join(f"{base} -> {e}" for base, e in failures)
    if all(e.unreadable for _, e in failures):
        return InputFileError(
            f"could not read {spec.gz_name} from any mirror ({tried});"
            " make the file readable or pass another --mirror"
        )
    if all(e.delivered for _, e in failures):
        return IntegrityError(
            f"{spec.name}: no mirror delivered the expected data ({tried});"
            " the mirrors may hold different files, try another --mirror"
        )
    if all(_is_local(base) for base, _ in failures):
        # The user already did what the hint below says: tell them what the folder must hold.
        folders = list(dict.fromkeys(str(_folder(base)) for base, _ in failures))
        where, between = (folders[0], "") if len(folders) == 1 else (_and(folders), " between them")
        hint = (
            f"{where} must hold {_and(names)}{between}"
            " (gzipped or decompressed; names without .gz work too)"
        )
    else:
        import shlex

        # `download` must fill this cache, not the one it would use by default.
        other = cache.absolute() != resolve_cache_dir().absolute()
        where = f" --cache-dir {shlex.quote(str(cache))}" if other else ""
        hint = (
            f"download the files by hand ({', '.join(names)}) into a folder and run"
            f" `mnist-infer download --mirror DIR{where}`"
        )
    return NetworkError(f"could not download {spec.gz_name} from any mirror ({tried}); {hint}")


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _is_local(base: str) -> bool:
    """A folder or file:// URL, not an http(s) mirror."""
    return not re.match(r"https?://", base, re.IGNORECASE)


def _check_mirror(base: str) -> None:
    if not base.strip():
        raise UsageError("empty mirror; expected an http(s):// or file:// URL or a folder")
    m = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", base)
    if m and m.group(1).lower() not in ("http", "https", "file"):
        raise UsageError(
            f"unsupported mirror {base!r}; expected an http(s):// or file:// URL or a folder"
        )
    if m and m.group(1).lower() == "file" and urlparse(base).netloc not in ("", "localhost"):
        raise UsageError(
            f"unsupported mirror {base!r}: file:// URLs name a folder on this machine, not a"
            " host; write file:///path/to/folder (three slashes) or just the folder"
        )


def _remove_entry(path: Path) -> None:
    """Delete a cached file that did not verify, so a failed fetch leaves none behind."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise MnistInferError(
            f"cannot replace {path}: it is a folder, expected a cached file; move it away"
        ) from None
    except OSError as e:
        raise MnistInferError(f"cannot replace {path}: {e.strerror or e}") from None


def _folder(base: str) -> Path:
    if base.lower().startswith("file://"):
        return Path(unquote(urlparse(base).path))
    return Path(base).expanduser()


@contextmanager
def _part(cache: Path, name: str) -> Iterator[Path]:
    """A new empty temporary file in the cache folder, removed on exit unless renamed away."""
    # As in files.atomic_write, the cleanup covers the moment the file is created: a Ctrl-C
    # just after it must not leave an empty one behind.
    tmp: Path | None = None
    try:
        while tmp is None:
            tmp = cache / f".{name}.{os.urandom(4).hex()}{PART_SUFFIX}"
            try:  # unlike mkstemp, mode 0o666 lets the umask decide who may read the cache
                open(tmp, "xb").close()  # "x": O_CREAT | O_EXCL
            except FileExistsError:
                tmp = None  # not ours
        yield tmp
    finally:
        if tmp is not None:
            with suppress(FileNotFoundError):
                os.unlink(tmp)


def _remove_partials(cache: Path) -> None:
    """Delete temporary files left by a killed download (we hold the lock, so none is live)."""
    for p in cache.glob(f".*{PART_SUFFIX}"):
        with suppress(OSError):
            p.unlink()


def _unwritable(what: str, cache: Path, e: OSError) -> MnistInferError:
    """The cache folder cannot be written (read-only, another user's): say how to use another."""
    return MnistInferError(
        f"cannot {what} the cache folder {cache}: {e.strerror or e}; pass --cache-dir DIR"
        " (or set MNIST_INFER_CACHE) to keep MNIST in a folder you can write to"
    )


@contextmanager
def _locked(cache: Path, quiet: bool) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(cache / ".lock")
    try:
        try:
            lock.acquire(timeout=0.2)
        except Timeout:
            if not quiet:
                print(f"Waiting for another download into {cache} to finish...", file=sys.stderr)
            lock.acquire()
    except OSError as e:
        raise _unwritable("lock", cache, e) from None
    try:
        yield
    finally:
        lock.release()
