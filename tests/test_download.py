from __future__ import annotations

import errno
import gzip
import hashlib
import io
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from loopback import (
    Loopback,
    MiniMnist,
    Reply,
    dropped,
    html_page,
    ok,
    stalled,
    status,
    trickled,
    trickled_head,
)

from mnist_infer import catalog
from mnist_infer.catalog import FILES
from mnist_infer.cli import cli
from mnist_infer.dataset import load_arrays
from mnist_infer.download import DEFAULT_MIRRORS, _read, default_mirrors, fetch
from mnist_infer.errors import IntegrityError, NetworkError, UsageError
from mnist_infer.transfer import Failed

LABELS = "t10k-labels-idx1-ubyte"
IMAGES = "t10k-images-idx3-ubyte"
FAST: dict[str, Any] = {
    "timeout": (0.5, 0.4),
    "retries": 1,
    "backoff": 0.01,
    "min_speed": (1000, 0.3),
    "head_timeout": 0.8,
    "quiet": True,
}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def listing(d: Path) -> set[str]:
    """Everything in the cache folder except the lock file."""
    return {p.name for p in d.iterdir()} - {".lock"} if d.exists() else set()


def assert_good_cache(cache: Path, mini: MiniMnist, names: set[str]) -> None:
    """Exactly `names` are cached (no temporary files), each with its pinned content."""
    assert listing(cache) == names
    for s in mini.files:
        if s.name in names:
            assert sha(cache / s.name) == s.sha256


def test_fetch_test_split(loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path) -> None:
    base = mini_mnist.serve(loopback, "m")
    res = fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert [r.name for r in res] == [IMAGES, LABELS]
    assert [r.source for r in res] == [base + IMAGES + ".gz", base + LABELS + ".gz"]
    assert not any(r.cached for r in res)
    assert res[1].size == 58
    assert res[1].summary() == f"{LABELS}  58 bytes  verified  ({base}{LABELS}.gz)"
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_fetch_all_then_cached(loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path) -> None:
    base = mini_mnist.serve(loopback, "m")
    fetch("all", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert_good_cache(cache_dir, mini_mnist, {s.name for s in mini_mnist.files})
    assert sum(loopback.hits.values()) == 4
    again = fetch("all", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert all(r.cached for r in again)
    assert "already cached, verified" in again[0].summary()
    assert sum(loopback.hits.values()) == 4


def test_force_refetches(loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path) -> None:
    base = mini_mnist.serve(loopback, "m")
    fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    res = fetch("test", cache_dir, [base], files=mini_mnist.files, force=True, **FAST)
    assert not any(r.cached for r in res)
    assert sum(loopback.hits.values()) == 4
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_failed_force_keeps_the_good_cache(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    fetch("test", cache_dir, [mini_mnist.serve(loopback, "m")], files=mini_mnist.files, **FAST)
    with pytest.raises(NetworkError):
        fetch(
            "test", cache_dir, [loopback.mirror("none")], files=mini_mnist.files, force=True, **FAST
        )
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_corrupt_cache_entry_is_refetched(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    base = mini_mnist.serve(loopback, "m")
    fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    p = cache_dir / IMAGES
    p.write_bytes(p.read_bytes()[:-1] + b"\x01")
    res = fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert [r.cached for r in res] == [False, True]
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_corrupt_cache_entry_removed_when_mirrors_fail(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    cache_dir.mkdir()
    (cache_dir / LABELS).write_bytes(mini_mnist.raw[LABELS][:-1] + b"\x07")
    with pytest.raises(NetworkError):
        fetch("test", cache_dir, [loopback.mirror("none")], files=mini_mnist.files, **FAST)
    assert listing(cache_dir) == set()


def test_leftover_partial_files_are_cleaned(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    cache_dir.mkdir()
    (cache_dir / f".{IMAGES}.1234abcd.part").write_bytes(b"half a download")
    fetch("test", cache_dir, [mini_mnist.serve(loopback, "m")], files=mini_mnist.files, **FAST)
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def _created_then_interrupted(file: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
    """open() where Ctrl-C arrives just after a temporary file was created ("x" mode)."""
    f = open(file, mode, *args, **kw)  # noqa: SIM115
    if "x" not in mode:
        return f
    f.close()
    raise KeyboardInterrupt


def _interrupted(*args: Any) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize("source", ["http", "folder"])
@pytest.mark.parametrize(
    ("name", "replacement"),
    [("open", _created_then_interrupted), ("_read", _interrupted)],
    ids=["temporary-file-created", "decompressing"],
)
def test_ctrl_c_leaves_no_partial_file(
    loopback: Loopback,
    mini_mnist: MiniMnist,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    name: str,
    replacement: Any,
) -> None:
    from mnist_infer import download

    base = mini_mnist.serve(loopback, "m") if source == "http" else str(mini_mnist.folder)
    monkeypatch.setattr(download, name, replacement, raising=False)
    with pytest.raises(KeyboardInterrupt):
        fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert listing(cache_dir) == set()


def _bad_first_mirror(mini: MiniMnist) -> dict[str, Reply]:
    gz = mini.gz(LABELS)
    other = gzip.compress(mini.raw[LABELS][:-1] + b"\x05", mtime=0)
    return {
        "404": status(404),
        "500": status(500),
        "503": status(503),
        "dropped": dropped(gz),
        "stalled": stalled(gz, delay=1.0),
        "trickle": trickled(gz, pace=50),
        "trickled-head": trickled_head(gz, gap=0.05),
        "html-200": html_page(),
        "html-as-octets": Reply(b"<html><body>blocked</body></html>"),
        "wrong-bytes": ok(other),
        "short-file": ok(mini.raw[LABELS][:-8]),
        "cut-gzip": ok(gz[: len(gz) // 2]),
        "garbage-gzip": ok(b"\x1f\x8b" + bytes(200)),
        "empty": ok(b""),
        "too-large": ok(bytes(100_000)),
    }


CASES = [
    "404",
    "500",
    "503",
    "dropped",
    "stalled",
    "trickle",
    "trickled-head",
    "html-200",
    "html-as-octets",
    "wrong-bytes",
    "short-file",
    "cut-gzip",
    "garbage-gzip",
    "empty",
    "too-large",
]
REASON = {
    "404": "HTTP 404 Not Found",
    "500": "HTTP 500 Internal Server Error (after 2 attempts)",
    "503": "HTTP 503 Service Unavailable (after 2 attempts)",
    "dropped": "IncompleteRead",
    "stalled": "timed out (connect 0.5 s, read 0.4 s) (after 2 attempts)",
    "trickle": "too slow: ",
    "trickled-head": "no complete response head (status line and headers) within 0.8 s",
    "html-200": "served an HTML page (HTTP 200), not the file",
    "html-as-octets": "served an HTML page (HTTP 200), not the file",
    "wrong-bytes": "checksum mismatch: expected SHA-256",
    "short-file": "wrong size: expected 58 bytes after decompression, found 50",
    "cut-gzip": "undecodable gzip data",
    "garbage-gzip": "undecodable gzip data",
    "empty": "wrong size: expected 58 bytes after decompression, found 0",
    "too-large": "too large",
}
DELIVERED = {"wrong-bytes", "short-file", "cut-gzip", "garbage-gzip", "empty", "too-large"}
HITS = {"500": 2, "503": 2, "dropped": 2, "stalled": 2}


@pytest.mark.parametrize("case", CASES)
def test_falls_back_to_second_mirror(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path, case: str
) -> None:
    bad = mini_mnist.serve(loopback, "bad")  # images are fine, labels are not
    loopback.route(f"bad/{LABELS}.gz", _bad_first_mirror(mini_mnist)[case])
    good = mini_mnist.serve(loopback, "good")
    res = fetch("test", cache_dir, [bad, good], files=mini_mnist.files, **FAST)
    assert [r.source for r in res] == [f"{bad}{IMAGES}.gz", f"{good}{LABELS}.gz"]
    assert loopback.hits[f"/bad/{LABELS}.gz"] == HITS.get(case, 1)
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


@pytest.mark.parametrize("case", CASES)
def test_single_bad_mirror_fails_cleanly(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path, case: str
) -> None:
    images = mini_mnist.serve(loopback, "bad")  # images are fine, labels are not
    loopback.route(f"bad/{LABELS}.gz", _bad_first_mirror(mini_mnist)[case])
    expected = IntegrityError if case in DELIVERED else NetworkError
    with pytest.raises(expected) as e:
        fetch("test", cache_dir, [images], files=mini_mnist.files, **FAST)
    msg = str(e.value)
    assert f"{images} -> " in msg
    assert REASON[case] in msg
    assert_good_cache(cache_dir, mini_mnist, {IMAGES})


def test_a_proxy_that_trickles_the_headers_is_given_up(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through an HTTP proxy the request line carries the whole URL: the loopback is the proxy.
    base = "http://mirror.invalid/m/"
    loopback.routes[f"{base}{IMAGES}.gz"] = [trickled_head(mini_mnist.gz(IMAGES), gap=0.05)]
    monkeypatch.setenv("HTTP_PROXY", loopback.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(NetworkError) as e:
        fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert f"{base} -> no complete response head (status line and headers) within 0.8 s" in str(
        e.value
    )


def test_a_slow_but_steady_mirror_is_kept(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    base = mini_mnist.serve(loopback, "m")
    loopback.route(f"m/{LABELS}.gz", trickled(mini_mnist.gz(LABELS), pace=100))
    opts = FAST | {"min_speed": (20, 0.3)}  # 100 bytes/s is slow, but above the limit
    res = fetch("test", cache_dir, [base], files=mini_mnist.files, **opts)
    assert res[1].source == f"{base}{LABELS}.gz"
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_too_slow_says_how_slow(loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path) -> None:
    base = mini_mnist.serve(loopback, "m")
    loopback.route(f"m/{LABELS}.gz", trickled(mini_mnist.gz(LABELS), pace=50))
    with pytest.raises(NetworkError) as e:
        fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
    assert re.search(
        rf"{re.escape(base)} -> too slow: \d+ bytes in 0\.[3-9] s, expected at least 1,000 bytes/s",
        str(e.value),
    ), str(e.value)
    assert loopback.hits[f"/m/{LABELS}.gz"] == 1  # given up for the next mirror, not retried


class _FailingDisk(io.RawIOBase):
    def readinto(self, b: Any) -> int:
        raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_read_error_is_not_called_bad_data(gzipped: bool) -> None:
    stream: Any = gzip.GzipFile(fileobj=_FailingDisk()) if gzipped else _FailingDisk()
    with pytest.raises(Failed, match=r"^read error: Input/output error$") as e:
        _read(stream)
    assert not e.value.delivered  # a fault of this mirror, not a wrong file


def test_retry_recovers_from_a_transient_error(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    base = mini_mnist.serve(loopback, "m")
    loopback.route(
        f"m/{LABELS}.gz", status(502), dropped(mini_mnist.gz(LABELS)), ok(mini_mnist.gz(LABELS))
    )
    opts = FAST | {"retries": 2}
    res = fetch("test", cache_dir, [base], files=mini_mnist.files, **opts)
    assert res[1].source == f"{base}{LABELS}.gz"
    assert loopback.hits[f"/m/{LABELS}.gz"] == 3
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})
    assert capsys.readouterr().err == ""  # quiet: no notes about the retries


def test_uncompressed_and_recompressed_content_accepted(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    loopback.route(f"m/{IMAGES}.gz", ok(gzip.compress(mini_mnist.raw[IMAGES], 1)))
    loopback.route(f"m/{LABELS}.gz", ok(mini_mnist.raw[LABELS]))
    fetch("test", cache_dir, [loopback.mirror("m")], files=mini_mnist.files, **FAST)
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_every_mirror_listed_in_the_error(mini_mnist: MiniMnist, cache_dir: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = f"http://127.0.0.1:{port}/mnist/"
    missing = str(cache_dir.parent / "no-such-folder")
    t = time.perf_counter()
    with pytest.raises(NetworkError) as e:
        fetch("test", cache_dir, [refused, missing], files=mini_mnist.files, **FAST)
    assert time.perf_counter() - t < 5
    msg = str(e.value)
    assert msg.startswith(f"could not download {IMAGES}.gz from any mirror (")
    assert f"{refused} -> " in msg
    assert "Connection refused" in msg
    assert f"{missing} -> no such folder" in msg
    assert "mnist-infer download --mirror DIR" in msg
    assert e.value.exit_code == 3
    assert listing(cache_dir) == set()


@pytest.mark.parametrize(
    ("kind", "gzipped", "suffix"),
    [
        ("gz", True, ".gz"),
        ("raw", False, ""),
        ("file-url", True, ".gz"),
        ("raw-named-gz", False, ".gz"),
        ("gz-named-raw", True, ""),
    ],
)
def test_local_folder_mirror(
    mini_mnist: MiniMnist, cache_dir: Path, tmp_path: Path, kind: str, gzipped: bool, suffix: str
) -> None:
    folder = tmp_path / "local"
    folder.mkdir()
    for s in mini_mnist.files:
        data = mini_mnist.gz(s.name) if gzipped else mini_mnist.raw[s.name]
        (folder / (s.name + suffix)).write_bytes(data)
    mirror = folder.as_uri() if kind == "file-url" else str(folder)
    res = fetch("all", cache_dir, [mirror], files=mini_mnist.files, **FAST)
    assert res[0].source == str(folder / f"train-images-idx3-ubyte{suffix}")
    assert_good_cache(cache_dir, mini_mnist, {s.name for s in mini_mnist.files})


def test_local_folder_bad_gz_then_good_raw(
    mini_mnist: MiniMnist, cache_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / f"{LABELS}.gz").write_bytes(b"\x1f\x8bnope")
    (folder / LABELS).write_bytes(mini_mnist.raw[LABELS])
    (folder / f"{IMAGES}.gz").write_bytes(mini_mnist.gz(IMAGES))
    res = fetch("test", cache_dir, [str(folder)], files=mini_mnist.files, **FAST)
    assert res[1].source == str(folder / LABELS)
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_local_folder_without_the_files(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(NetworkError, match=f"neither {IMAGES}.gz nor {IMAGES} is in {tmp_path}"):
        fetch("test", cache_dir, [str(tmp_path)], **FAST)


@pytest.mark.parametrize(
    ("mirrors", "split", "message"),
    [
        (["ftp://example.org/mnist/"], "test", "unsupported mirror 'ftp://example.org/mnist/'"),
        ([], "test", "no mirrors given"),
        (["/x"], "valid", "unknown split 'valid'; expected one of: test, train, all"),
    ],
)
def test_usage_errors(mirrors: list[str], split: str, message: str, cache_dir: Path) -> None:
    with pytest.raises(UsageError, match=message):
        fetch(split, cache_dir, mirrors, **FAST)
    assert not cache_dir.exists()


def test_default_mirrors_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_mirrors() == list(DEFAULT_MIRRORS)
    assert all(m.startswith("https://") and "lecun" not in m for m in DEFAULT_MIRRORS)
    monkeypatch.setenv("MNIST_INFER_MIRRORS", " /a\n http://b/ ")
    assert default_mirrors() == ["/a", "http://b/"]


def test_concurrent_fetches_share_one_download(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    base = mini_mnist.serve(loopback, "m")
    for s in mini_mnist.files:  # slow enough that the two threads overlap
        loopback.route(f"m/{s.gz_name}", stalled(mini_mnist.gz(s.name), delay=0.2))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            fetch("test", cache_dir, [base], files=mini_mnist.files, **FAST)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert loopback.hits[f"/m/{IMAGES}.gz"] == 1
    assert loopback.hits[f"/m/{LABELS}.gz"] == 1
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_waits_for_a_held_lock(
    mini_mnist: MiniMnist, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from filelock import FileLock

    cache_dir.mkdir()
    done = threading.Event()

    def run() -> None:
        fetch("test", cache_dir, [str(mini_mnist.folder)], files=mini_mnist.files)
        done.set()

    with FileLock(cache_dir / ".lock"):
        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.4)
        assert not done.is_set()
        assert listing(cache_dir) == set()
    t.join(timeout=10)
    assert done.is_set()
    assert capsys.readouterr().err == (
        f"Waiting for another download into {cache_dir} to finish...\n"
    )
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


def test_a_complete_cache_needs_no_lock(
    filled: MiniMnist, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from filelock import FileLock

    with FileLock(cache_dir / ".lock"):  # another process downloading: readers need not wait
        res = fetch("test", cache_dir, ["/nowhere"], files=filled.files)
    assert [(r.name, r.cached) for r in res] == [(IMAGES, True), (LABELS, True)]
    assert capsys.readouterr().err == ""


def test_load_arrays_downloads_missing_split(
    loopback: Loopback, mini_mnist: MiniMnist, cache_dir: Path
) -> None:
    base = mini_mnist.serve(loopback, "m")
    x, t = load_arrays("test", cache_dir, mirrors=[base], files=mini_mnist.files)
    np.testing.assert_array_equal(x, mini_mnist.arrays[IMAGES].reshape(50, 784))
    np.testing.assert_array_equal(t, mini_mnist.arrays[LABELS])
    assert_good_cache(cache_dir, mini_mnist, {IMAGES, LABELS})


# --- the command ------------------------------------------------------------


@pytest.fixture
def mini_files(mini_mnist: MiniMnist, monkeypatch: pytest.MonkeyPatch) -> MiniMnist:
    """Pin the generated files' hashes in place of the real ones for CLI runs."""
    monkeypatch.setattr(catalog, "FILES", mini_mnist.files)
    return mini_mnist


def invoke(*args: str, **kw: Any) -> Any:
    return CliRunner().invoke(cli, ["download", *args], **kw)


def test_cli_download_lines(loopback: Loopback, mini_files: MiniMnist, cache_dir: Path) -> None:
    base = mini_files.serve(loopback, "m")
    res = invoke("--mirror", base, "--split", "test")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        f"{IMAGES}  39,216 bytes  verified  ({base}{IMAGES}.gz)",
        f"{LABELS}  58 bytes  verified  ({base}{LABELS}.gz)",
    ]
    assert res.stderr == ""
    assert_good_cache(cache_dir, mini_files, {IMAGES, LABELS})
    again = invoke("--mirror", base, "--split", "test")
    assert again.exit_code == 0
    assert again.stdout.splitlines()[1] == (
        f"{LABELS}  58 bytes  already cached, verified  ({cache_dir / LABELS})"
    )
    forced = invoke("--mirror", base, "--split", "test", "--force")
    assert "already cached" not in forced.stdout
    assert forced.stdout.count("  verified  (") == 2
    assert sum(loopback.hits.values()) == 4


def test_cli_says_when_it_retries(
    loopback: Loopback, mini_files: MiniMnist, cache_dir: Path
) -> None:
    base = mini_files.serve(loopback, "m")
    loopback.route(f"m/{LABELS}.gz", status(502), ok(mini_files.gz(LABELS)))
    res = invoke("--mirror", base, "--split", "test")
    assert res.exit_code == 0, res.output
    assert res.stderr == (
        f"{base}{LABELS}.gz: HTTP 502 Bad Gateway; retrying in 0.5 s (attempt 2 of 4)\n"
    )
    assert res.stdout.splitlines()[1] == f"{LABELS}  58 bytes  verified  ({base}{LABELS}.gz)"


def test_cli_quiet_all_splits_cache_dir_option(
    loopback: Loopback, mini_files: MiniMnist, tmp_path: Path
) -> None:
    cache = tmp_path / "elsewhere"
    res = invoke("-q", "--mirror", mini_files.serve(loopback, "m"), "--cache-dir", str(cache))
    assert res.exit_code == 0
    assert res.output == ""
    assert_good_cache(cache, mini_files, {s.name for s in mini_files.files})


def test_cli_mirror_env_var_and_file_url(
    mini_files: MiniMnist, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_INFER_MIRRORS", f"/does/not/exist {mini_files.folder.as_uri()}")
    res = invoke("--split", "train")
    assert res.exit_code == 0, res.output
    assert f"({mini_files.folder}/train-labels-idx1-ubyte.gz)" in res.stdout
    assert_good_cache(cache_dir, mini_files, {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"})


@pytest.mark.parametrize("length", ["abc", "{n}, {n}"])
def test_malformed_content_length_is_ignored(
    length: str, loopback: Loopback, mini_files: MiniMnist, cache_dir: Path
) -> None:
    base = mini_files.serve(loopback, "m")
    body = mini_files.gz(LABELS)
    loopback.route(f"m/{LABELS}.gz", Reply(body, length=length.format(n=len(body))))
    res = invoke("--mirror", base, "--split", "test")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1] == f"{LABELS}  58 bytes  verified  ({base}{LABELS}.gz)"
    assert_good_cache(cache_dir, mini_files, {IMAGES, LABELS})


def test_cli_folder_in_place_of_a_cached_file(mini_files: MiniMnist, cache_dir: Path) -> None:
    (cache_dir / LABELS).mkdir(parents=True)
    res = invoke("--mirror", str(mini_files.folder), "--split", "test")
    assert res.exit_code == 1
    assert res.stderr == (
        f"Error: cannot replace {cache_dir / LABELS}: it is a folder, expected a cached file;"
        " move it away\n"
    )
    assert (cache_dir / LABELS).is_dir()


def test_cli_offline_hint_names_the_cache_given(loopback: Loopback, tmp_path: Path) -> None:
    cache = tmp_path / "my cache"
    a = loopback.mirror("a")
    res = invoke("--mirror", a, "--split", "test", "--cache-dir", str(cache))
    assert res.exit_code == 3
    assert res.stderr.endswith(
        f" into a folder and run `mnist-infer download --mirror DIR --cache-dir '{cache}'`\n"
    )


def test_cli_local_folder(mini_files: MiniMnist, cache_dir: Path) -> None:
    res = invoke("--mirror", str(mini_files.folder), "--split", "test")
    assert res.exit_code == 0
    assert f"({mini_files.folder / LABELS}.gz)" in res.stdout


def test_cli_unreadable_file_in_a_mirror_folder(
    mini_files: MiniMnist, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_infer import download

    unreadable = mini_files.folder / f"{LABELS}.gz"

    def refuse(path: object, *args: Any, **kwargs: Any) -> Any:
        if Path(str(path)) == unreadable:  # as chmod 000 would, even for root
            raise PermissionError(13, "Permission denied")
        return open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(download, "open", refuse, raising=False)
    res = invoke("--mirror", str(mini_files.folder), "--split", "test")
    assert res.exit_code == 5
    assert res.stderr == (
        f"Error: could not read {LABELS}.gz from any mirror ({mini_files.folder} -> cannot read"
        f" {unreadable}: Permission denied); make the file readable or pass another --mirror\n"
    )
    assert listing(cache_dir) == {IMAGES}


def test_cli_all_mirrors_fail(loopback: Loopback, cache_dir: Path) -> None:
    a, b = loopback.mirror("a"), loopback.mirror("b")
    loopback.route(f"b/{IMAGES}.gz", html_page())
    res = invoke("--mirror", a, "--mirror", b, "--split", "test")
    assert res.exit_code == 3
    assert res.stdout == ""
    assert res.stderr == (
        f"Error: could not download {IMAGES}.gz from any mirror ({a} -> HTTP 404 Not Found;"
        f" {b} -> served an HTML page (HTTP 200), not the file); download the files by hand"
        f" ({IMAGES}.gz, {LABELS}.gz) into a folder and run `mnist-infer download --mirror DIR`\n"
    )
    assert listing(cache_dir) == set()


@pytest.mark.parametrize("case", ["empty", "missing", "regular-file", "file-url", "two"])
def test_cli_local_mirrors_without_the_files(case: str, tmp_path: Path, cache_dir: Path) -> None:
    empty, missing, file = tmp_path / "empty", tmp_path / "missing", tmp_path / "file.gz"
    empty.mkdir()
    file.write_bytes(b"x")
    neither = f"neither {IMAGES}.gz nor {IMAGES} is in {empty}"
    files = f"{IMAGES}.gz and {LABELS}.gz"
    mirrors, tried, hint = {
        "empty": ([empty], f"{empty} -> {neither}", f"{empty} must hold {files}"),
        "missing": (
            [missing],
            f"{missing} -> no such folder {missing}",
            f"{missing} must hold {files}",
        ),
        "regular-file": ([file], f"{file} -> {file} is not a folder", f"{file} must hold {files}"),
        "file-url": (
            [empty.as_uri()],
            f"{empty.as_uri()} -> {neither}",
            f"{empty} must hold {files}",
        ),
        "two": (
            [missing, empty],
            f"{missing} -> no such folder {missing}; {empty} -> {neither}",
            f"{missing} and {empty} must hold {files} between them",
        ),
    }[case]
    res = invoke(*(a for m in mirrors for a in ("--mirror", str(m))), "--split", "test")
    assert res.exit_code == 3
    assert res.stdout == ""
    assert res.stderr == (
        f"Error: could not download {IMAGES}.gz from any mirror ({tried}); {hint}"
        " (gzipped or decompressed; names without .gz work too)\n"
    )
    assert listing(cache_dir) == set()


def test_cli_checksum_failure(loopback: Loopback, cache_dir: Path) -> None:
    real = {s.name: s for s in FILES}[IMAGES]
    loopback.route(f"m/{IMAGES}.gz", ok(gzip.compress(bytes(real.size))))
    res = invoke("--mirror", loopback.mirror("m"), "--split", "test")
    assert res.exit_code == 4
    assert res.stderr.startswith(f"Error: {IMAGES}: no mirror delivered the expected data")
    assert f"checksum mismatch: expected SHA-256 {real.sha256}, found " in res.stderr
    assert listing(cache_dir) == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "valid"], "Invalid value for '--split'"),
        (["--mirror", "ftp://x/"], "Error: unsupported mirror 'ftp://x/'"),
        (
            ["--mirror", "file://tmp/mnist"],
            "Error: unsupported mirror 'file://tmp/mnist': file:// URLs name a folder on this"
            " machine, not a host; write file:///path/to/folder (three slashes) or just the"
            " folder\n",
        ),
        (
            ["--mirror", ""],
            "Error: empty mirror; expected an http(s):// or file:// URL or a folder\n",
        ),
    ],
)
def test_cli_usage(args: list[str], message: str, cache_dir: Path) -> None:
    res = invoke(*args)
    assert res.exit_code == 2
    assert message in res.stderr


ELSEWHERE = (
    "; pass --cache-dir DIR (or set MNIST_INFER_CACHE) to keep MNIST in a folder you can write to"
)


@pytest.mark.parametrize(
    ("blocker", "message"),
    [
        ("cache", "cannot create the cache folder {cache}: Not a directory" + ELSEWHERE),
        ("cache/sub/.lock/x", "cannot lock the cache folder {cache}: Is a directory" + ELSEWHERE),
    ],
)
def test_cli_unusable_cache(
    blocker: str, message: str, mini_files: MiniMnist, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "sub"
    (tmp_path / blocker).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / blocker).write_text("x")
    res = invoke("--mirror", str(mini_files.folder), "--cache-dir", str(cache))
    assert res.exit_code == 1
    assert res.stderr == f"Error: {message.format(cache=cache)}\n"


@pytest.fixture
def unlockable(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's lock file cannot be created, as in a read-only (e.g. shared) cache."""
    from filelock import FileLock

    def refuse(self: FileLock, *args: Any, **kw: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(cache_dir / ".lock"))

    monkeypatch.setattr(FileLock, "acquire", refuse)


@pytest.mark.usefixtures("unlockable")
def test_cli_complete_cache_that_cannot_be_locked(mini_files: MiniMnist, cache_dir: Path) -> None:
    cache_dir.mkdir()
    for s in mini_files.files:
        (cache_dir / s.name).write_bytes(mini_files.raw[s.name])
    res = invoke("--mirror", str(mini_files.folder))
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        f"{s.name}  {s.size:,} bytes  already cached, verified  ({cache_dir / s.name})"
        for s in mini_files.files
    ]
    assert res.stderr == ""
    assert_good_cache(cache_dir, mini_files, {s.name for s in mini_files.files})


@pytest.mark.usefixtures("unlockable")
@pytest.mark.parametrize(
    ("cached", "args"), [("train", []), ("all", ["--force"])], ids=["test-missing", "force"]
)
def test_cli_cache_that_cannot_be_locked_when_writing(
    cached: str, args: list[str], mini_files: MiniMnist, cache_dir: Path
) -> None:
    cache_dir.mkdir()
    kept = {s.name for s in mini_files.files if cached in ("all", s.split)}
    for name in kept:
        (cache_dir / name).write_bytes(mini_files.raw[name])
    res = invoke("--mirror", str(mini_files.folder), *args)
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr == (
        f"Error: cannot lock the cache folder {cache_dir}: Permission denied{ELSEWHERE}\n"
    )
    assert_good_cache(cache_dir, mini_files, kept)


@pytest.mark.usefixtures("unlockable")
@pytest.mark.parametrize("args", [["evaluate"], ["show", "--out", "digits"], ["download"]])
def test_cli_empty_cache_that_cannot_be_written_names_cache_dir(
    args: list[str], mini_files: MiniMnist, cache_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cache_dir.mkdir()  # empty, and read-only as far as the lock can tell
    res = CliRunner().invoke(cli, [*args, "-q", "--mirror", str(mini_files.folder)])
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr == (
        f"Error: cannot lock the cache folder {cache_dir}: Permission denied{ELSEWHERE}\n"
    )


@pytest.mark.parametrize("source", ["http", "folder"])
def test_cli_disk_full_during_download(
    source: str, loopback: Loopback, mini_files: MiniMnist, cache_dir: Path
) -> None:
    import resource
    import signal

    base = mini_files.serve(loopback, "m") if source == "http" else str(mini_files.folder)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, limits[1]))
    try:
        res = invoke("--mirror", base, "--split", "test")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert res.exit_code == 1
    assert res.stderr == (
        f"Error: cannot write to the cache folder {cache_dir}: File too large{ELSEWHERE}\n"
    )
    assert listing(cache_dir) == set()


# --- the real files -----------------------------------------------------------


TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def check_real_cache(cache: Path) -> None:
    for s in FILES:
        assert sha(cache / s.name) == s.sha256
    assert listing(cache) == {s.name for s in FILES}
    for split, n, counts in (("test", 10_000, TEST_COUNTS), ("train", 60_000, TRAIN_COUNTS)):
        x, t = load_arrays(split, cache)
        assert x.shape == (n, 784)
        assert x.reshape(n, 28, 28).shape == (n, 28, 28)
        assert np.bincount(t, minlength=10).tolist() == counts


def test_real_files_from_folder(real_mnist_dir: Path, cache_dir: Path) -> None:
    res = invoke("--mirror", str(real_mnist_dir))
    assert res.exit_code == 0, res.output
    assert res.stdout.count("  verified  (") == 4
    check_real_cache(cache_dir)


def test_real_files_over_http(real_mnist_dir: Path, loopback: Loopback, cache_dir: Path) -> None:
    loopback.serve_folder("real", real_mnist_dir)
    res = invoke("--mirror", loopback.mirror("gone"), "--mirror", loopback.mirror("real"))
    assert res.exit_code == 0, res.output
    assert res.stdout.count(loopback.mirror("real")) == 4
    assert loopback.hits[f"/gone/{FILES[0].gz_name}"] == 1
    check_real_cache(cache_dir)


@pytest.mark.network
def test_default_mirrors_online(cache_dir: Path) -> None:
    res = invoke("--split", "test")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("https://") == 2
