"""Hostile inputs, made here by the tests: each ends in bounded time and memory, one clean line.

Every case runs the real command in a child process limited to 1 GiB of address space and
20 s, and checks the exit code, the exact error line, and that nothing else was printed.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import pickle
import resource
import shutil
import socket
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import pinned_command
from crafted import RECONSTRUCT, SCALAR, Call
from loopback import Loopback, MiniMnist, trickled_head

import mnist_infer

SHIPPED = Path(mnist_infer.__file__).parent / "_shipped"

LIMIT = 2**30  # bytes of address space
SECONDS = 20
SIZES = (784, 50, 100, 10)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def run_bounded(
    *args: str, env: dict[str, str] | None = None, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m mnist_infer ARGS` (or `command` ARGS) under the memory limit, for SECONDS."""
    return subprocess.run(
        [*(command or [sys.executable, "-m", "mnist_infer"]), *args],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        preexec_fn=_limit_memory,
        # No default mirror on the internet: a case that reached a download would fail here.
        # `_` first, whatever order make or the shell gave the rest: /proc/self/environ read
        # as weights then starts with a byte that is no pickle opcode.
        env={
            "_": sys.executable,
            **os.environ,
            "MNIST_INFER_MIRRORS": "/nonexistent",
            **(env or {}),
        },
        stdin=subprocess.DEVNULL,
    )


def assert_refused(res: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """Exit `code`, nothing on stdout, `Error: message` as the only line of stderr."""
    assert "Traceback" not in res.stderr
    assert res.stderr == f"Error: {message}\n"
    assert res.returncode == code
    assert res.stdout == ""


# --- weights -------------------------------------------------------------------------


FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
F4x4 = (1, (4,), np.dtype("f4"), False, bytes(16))


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        f"{c}{i}": rng.normal(size=(SIZES[i - 1], SIZES[i]) if c == "W" else SIZES[i]).astype(
            np.float32
        )
        for i in range(1, len(SIZES))
        for c in "Wb"
    }


def _dtype_state(kind: str, state: tuple[object, ...]) -> Call:
    """A numpy.dtype whose pickled state is `state` (numpy's own __setstate__ takes any)."""
    return Call(np.dtype, kind, False, True, state=state)


FORGED_F8 = _dtype_state("f8", (3, "<", None, None, None, 8, 1, 0x3F))
FORGED_STATE = "(3, '<', None, None, None, 8, ...)"


def _with_w1(w1: object) -> bytes:
    return pickle.dumps({**_params(), "W1": w1}, 2)


def _memo_encode(copies: int, size: int) -> bytes:
    """One `size`-character string, memoised, passed `copies` times to _codecs.encode."""
    text = "a" * size
    return pickle.dumps([Call(codecs.encode, text, "latin1") for _ in range(copies)], 2)


def _memo_arrays(copies: int, size: int) -> bytes:
    """One `size`-byte data string, memoised, given to `copies` arrays."""
    state = (1, (size,), np.dtype("u1"), False, bytes(size))
    arrays = [Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=state) for _ in range(copies)]
    return pickle.dumps(arrays, 4)


def _keys(n: int) -> bytes:
    return pickle.dumps({f"k{i}": 0 for i in range(n)})


REFUSED = "refusing to load {p}: "
NOT_NUMERIC = (
    "dtype {d!r} is not allowed (a weights pickle may only hold arrays of bool, integer, float"
    " or complex numbers)"
)
BUDGET = (
    "it asks for more memory than its size accounts for (numpy's pickles hold each array's"
    " bytes once; at most twice the file's size plus 1 MiB is allowed)"
)
BUILD_ON = "BUILD is only allowed on the arrays and dtypes numpy's pickles make, found {t}"
PLAIN_STATE = (
    "the state of dtype 'f8' is not that of a plain numeric dtype (expected (3, byte order,"
    " None, None, None, -1, -1, 0), found {s})"
)

# Pickles that name only allowed globals, yet try to reach numpy internals or to allocate.
HOSTILE_PICKLES: dict[str, tuple[Callable[[], bytes], str]] = {
    "forged dtype flags in an array's state": (
        lambda: _with_w1(
            Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=(1, (4,), FORGED_F8, False, bytes(32)))
        ),
        REFUSED + PLAIN_STATE.format(s=FORGED_STATE),
    ),
    "forged dtype in BUILD on a _frombuffer array": (
        lambda: _with_w1(
            Call(
                FROMBUFFER,
                bytes(16),
                np.dtype("f4"),
                (4,),
                "C",
                state=(1, (4,), FORGED_F8, False, bytes(32)),
            )
        ),
        REFUSED + PLAIN_STATE.format(s=FORGED_STATE),
    ),
    "plain state in BUILD on a _frombuffer array": (
        lambda: _with_w1(Call(FROMBUFFER, bytes(16), np.dtype("f4"), (4,), "C", state=F4x4)),
        REFUSED + BUILD_ON.format(t="ndarray"),
    ),
    "BUILD on a _frombuffer array of a bytearray": (
        lambda: pickle.dumps(
            {"W1": Call(FROMBUFFER, bytearray(16), np.dtype("f4"), (4,), "C", state=F4x4)}, 5
        ),
        REFUSED + BUILD_ON.format(t="ndarray"),
    ),
    "APPENDS to a bytearray that an array was made from": (
        lambda: (
            b"\x80\x04(\x8c\x02W1\x96\x10\x00\x00\x00\x00\x00\x00\x00"
            + bytes(16)
            + b"\x94(K\x01K\x02e\x8c\x02b1h\x00d."
        ),
        REFUSED + "APPENDS is only allowed on a list, found bytearray",
    ),
    "SETITEM on an array": (
        lambda: (
            b"\x80\x02}X\x02\x00\x00\x00W1"
            + pickle.dumps(Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=F4x4), 2)[2:-1]
            + b"K\x00K\x01ss."  # array[0] = 1, then {"W1": array}
        ),
        REFUSED + "SETITEM is only allowed on a dict, found ndarray",
    ),
    "dtype with forged names and flags": (
        lambda: _with_w1(
            Call(
                SCALAR,
                _dtype_state("f8", (3, "|", None, ("a",), None, 8, 1, 0x3F)),
                bytes(8),
            )
        ),
        REFUSED + PLAIN_STATE.format(s="(3, '|', None, ('a',), None, 8, ...)"),
    ),
    "object dtype": (
        lambda: _with_w1(
            Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=(1, (10**5,), np.dtype("O"), False, []))
        ),
        REFUSED + NOT_NUMERIC.format(d="O8"),
    ),
    "V1048576 scalar": (
        lambda: _with_w1(Call(SCALAR, np.dtype("V1048576"), b"")),
        REFUSED + NOT_NUMERIC.format(d="V1048576"),
    ),
    "memoised 1 MiB string encoded 3,000 times": (
        lambda: _memo_encode(3000, 2**20),
        REFUSED + BUDGET,
    ),
    "memoised 1 MiB of data for 3,000 arrays": (
        lambda: _memo_arrays(3000, 2**20),
        REFUSED + BUDGET,
    ),
    "a global with a newline in a 200-character name": (
        lambda: b"\x80\x04\x8c\x05os\nxx\x94\x8c\xc8" + b"a" * 200 + b"\x93.",
        REFUSED + "global os\\nxx." + "a" * 100 + "… is not allowed (a weights pickle may only"
        " rebuild numpy arrays; this one could run code)",
    ),
    # Hashing this 10-way tuple tree, 40 deep, would visit 10**40 tuples.
    "a dict key whose hash never ends": (
        lambda: (
            b"\x80\x04)\x94"  # () memoised as 0
            # MARK, ten BINGETs of tuple i, TUPLE, MEMOIZE: tuple i + 1
            + b"".join(b"(" + (b"h" + bytes([i])) * 10 + b"t\x94" for i in range(39))
            + b"}h\x27K\x01s."  # {tuple 39: 1}
        ),
        REFUSED + "dict keys and set items must be strings, bytes or numbers (a weights pickle"
        " maps names to arrays), found tuple",
    ),
    "an int key too long to print": (
        lambda: pickle.dumps({10**5000: 1}),
        "{p}: missing key 'W1' (expected arrays W1..Wn and b1..bn, found keys: <int too long to"
        " show>)",
    ),
    # The Python unpickler would make the bytearray, zeroed, before reading its bytes.
    "a bytearray that claims 1.5 GiB": (
        lambda: b"\x80\x05\x96" + struct.pack("<Q", 3 * 2**29) + bytes(100) + b".",
        "cannot load weights {p}: truncated or corrupt pickle",
    ),
    "a bytearray cut short": (
        lambda: b"\x80\x05\x96" + struct.pack("<Q", 200) + bytes(100) + b".",
        "cannot load weights {p}: truncated or corrupt pickle",
    ),
    "1,000,000 keys": (
        lambda: _keys(10**6),
        REFUSED + "it takes over 100,000 pickle operations (a dict of numpy arrays takes a few"
        " dozen per array)",
    ),
    "5,000 keys, none of them weights": (
        lambda: _keys(5000),
        "{p}: missing key 'W1' (expected arrays W1..Wn and b1..bn, found keys: 'k0', 'k1', 'k10',"
        " 'k100', 'k1000', 'k1001', 'k1002', 'k1003', 'k1004', 'k1005', …and 4,990 more)",
    ),
}


def _weights_args(command: str, p: Path) -> list[str]:
    """The command line that loads weights p: info and evaluate read the whole file first
    (they report its SHA-256); predict unpickles it straight from the file."""
    if command == "info":
        return ["info", str(p)]
    if command == "evaluate":
        return ["evaluate", "--weights", str(p)]
    return ["predict", "--weights", str(p), str(p.with_name("no-such-digit.png"))]


@pytest.mark.parametrize("command", ["info", "evaluate", "predict"])
@pytest.mark.parametrize("case", list(HOSTILE_PICKLES))
def test_hostile_pickle(tmp_path: Path, case: str, command: str) -> None:
    make, message = HOSTILE_PICKLES[case]
    p = tmp_path / "w.pkl"
    p.write_bytes(make())
    assert_refused(run_bounded(*_weights_args(command, p)), 5, message.format(p=p))


def _npz_entries(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as z:
        for i in range(10_001):
            z.writestr(f"x{i}.npy", b"")


def _npz_header_bomb(p: Path) -> None:
    """An .npy header that claims 800 GB of float64, with 64 bytes of data."""
    from numpy.lib import format as npy

    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10**11,)})
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("W1.npy", head.getvalue() + bytes(64))


def _symlink(target: str) -> Callable[[Path], object]:
    return lambda p: p.symlink_to(target)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


CHARACTER_DEVICE = "cannot read weights {p}: is a character device, expected a regular file"
HOSTILE_FILES: dict[str, tuple[Callable[[Path], object], str]] = {
    "symlink to /dev/zero": (_symlink("/dev/zero"), CHARACTER_DEVICE),
    "symlink to /dev/urandom": (_symlink("/dev/urandom"), CHARACTER_DEVICE),
    # A size of 0 that says nothing: what is there is read, up to the limit.
    "symlink to /proc/self/environ": (
        _symlink("/proc/self/environ"),
        "cannot load weights {p}: not a pickle or .npz file",
    ),
    "FIFO": (os.mkfifo, "cannot read weights {p}: is a FIFO (named pipe), expected a regular file"),
    "socket": (_socket, "cannot read weights {p}: is a socket, expected a regular file"),
    "sparse 3 GiB file": (
        lambda p: os.truncate(p.touch() or p, 3 * 2**30),
        "cannot load weights {p}: the file is 3,221,225,472 bytes, expected at most"
        " 268,435,456 (256 MiB)",
    ),
    "npz whose header claims 800 GB": (
        _npz_header_bomb,
        "cannot load weights {p}: corrupt .npz archive",
    ),
    "npz with 10,001 entries": (
        _npz_entries,
        "cannot load weights {p}: the .npz holds 10,001 entries, expected at most 10,000 (one per"
        " array)",
    ),
}


@pytest.mark.parametrize("command", ["info", "evaluate", "predict"])
def test_help_states_the_size_limit(command: str) -> None:
    from click.testing import CliRunner

    from mnist_infer.cli import cli
    from mnist_infer.weights import MAX_WEIGHTS_BYTES

    assert MAX_WEIGHTS_BYTES == 256 * 2**20
    text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
    assert "at most 256 MiB" in text


@pytest.mark.parametrize("command", ["info", "evaluate", "predict"])
@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_weights_file(tmp_path: Path, case: str, command: str) -> None:
    make, message = HOSTILE_FILES[case]
    p = tmp_path / "w.pkl"
    make(p)
    assert_refused(run_bounded(*_weights_args(command, p)), 5, message.format(p=p))


# --- downloads -----------------------------------------------------------------------


def _with_head_timeout(seconds: float, command: list[str]) -> list[str]:
    """`command` (a `python -c CODE` line) with download.HEAD_TIMEOUT set first."""
    python, flag, code = command
    return [
        python,
        flag,
        f"from mnist_infer import download; download.HEAD_TIMEOUT = {seconds};" + code,
    ]


def test_a_server_that_trickles_its_headers_is_given_up(
    loopback: Loopback, mini_mnist: MiniMnist, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    base = mini_mnist.serve(loopback, "m")
    name = "t10k-images-idx3-ubyte.gz"
    loopback.route(f"m/{name}", trickled_head(mini_mnist.gz(name[:-3]), gap=0.5))  # 60 s in all
    # A byte every 0.5 s is well inside the 30 s read timeout: only the head's deadline ends it.
    command = _with_head_timeout(2, pinned_command(mini_mnist.folder.parent / "none"))
    args = ("download", "--split", "test", "--mirror", base, "--cache-dir", str(cache))
    res = run_bounded(*args, command=command)
    assert_refused(
        res,
        3,
        f"could not download {name} from any mirror ({base} -> no complete response head"
        " (status line and headers) within 2 s); download the files by hand"
        f" ({name}, t10k-labels-idx1-ubyte.gz) into a folder and run"
        f" `mnist-infer download --mirror DIR --cache-dir {cache}`",
    )
    assert loopback.hits[f"/m/{name}"] == 1


def test_a_server_that_trickles_its_headers_gives_way_to_the_next_mirror(
    loopback: Loopback, real_mnist_dir: Path, tmp_path: Path
) -> None:
    base = loopback.mirror("m")
    name = "t10k-images-idx3-ubyte.gz"
    loopback.route(f"m/{name}", trickled_head(b"", gap=0.5))
    command = _with_head_timeout(2, pinned_command(tmp_path / "none"))
    args = ("download", "--split", "test", "--mirror", base, "--mirror", str(real_mnist_dir))
    res = run_bounded(*args, "--cache-dir", str(tmp_path / "cache"), command=command)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == (
        f"t10k-images-idx3-ubyte  7,840,016 bytes  verified  ({real_mnist_dir / name})"
    )
    assert "Traceback" not in res.stderr


# --- the cache -----------------------------------------------------------------------


def _flip_bytes(p: Path) -> None:
    """Invert 2,000 images' bytes in place (same size, inode and times)."""
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[16 : 16 + 2000 * 784] = bytes(255 - b for b in data[16 : 16 + 2000 * 784])
    with open(p, "r+b") as f:
        f.write(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _change_a_label(p: Path) -> None:
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[8] = (data[8] + 1) % 10
    with open(p, "r+b") as f:
        f.write(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


DAMAGE = {
    "2,000 images inverted": ("t10k-images-idx3-ubyte", _flip_bytes),
    "one label changed": ("t10k-labels-idx1-ubyte", _change_a_label),
}


@pytest.fixture(scope="module")
def real_cache(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real test split, downloaded from the local copy."""
    from mnist_infer.download import fetch

    cache = tmp_path_factory.mktemp("real") / "cache"
    fetch("test", cache, [str(real_mnist_dir)], quiet=True)
    return cache


@pytest.fixture
def recorded(real_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the real cache, its files verified and recorded as an earlier run leaves them."""
    from mnist_infer import catalog
    from mnist_infer.dataset import load_arrays

    cache = tmp_path / "c"
    shutil.copytree(real_cache, cache)
    monkeypatch.setattr(catalog, "_SETTLED_NS", -1)  # no waiting for the copies to settle
    load_arrays("test", cache, mirrors=["/nowhere"])
    stamps = (cache / ".verified").read_text().splitlines()
    assert [line.split()[4] for line in stamps] == [
        str((cache / line.split()[0]).stat().st_ino) for line in stamps
    ]
    return cache


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_cache_is_fetched_again(recorded: Path, real_mnist_dir: Path, case: str) -> None:
    name, damage = DAMAGE[case]
    damage(recorded / name)
    args = ("evaluate", "-q", "--weights", "small", "--cache-dir", str(recorded))
    res = run_bounded(*args, "--mirror", str(real_mnist_dir))
    # the book-shaped shipped weights, as measured when they were trained
    meta = json.loads((SHIPPED / "mnist-mlp-784-50-100-10.pkl.json").read_text())
    right = round(meta["test_accuracy"] * 10000)
    assert res.stdout == f"Accuracy: {meta['test_accuracy']:.4f} ({right}/10000)\n"
    assert res.returncode == 0
    assert res.stderr == ""


def _damaged(path: Path, split: str, options: str) -> str:
    return (
        f"cached MNIST file {path} is damaged (its bytes are not the pinned SHA-256)"
        f" and no mirror could replace it; run `mnist-infer download --split {split}{options}"
        " --mirror DIR` with DIR a folder holding the MNIST .gz files (or the URL of a mirror"
        " you can reach)"
    )


@pytest.mark.parametrize("case", list(DAMAGE))
@pytest.mark.parametrize("command", ["evaluate", "show"])
def test_a_damaged_cache_without_a_mirror_is_exit_4(
    recorded: Path, tmp_path: Path, case: str, command: str
) -> None:
    name, damage = DAMAGE[case]
    damage(recorded / name)
    none = tmp_path / "none"
    args = ["evaluate", "-q"] if command == "evaluate" else ["show", "--out", str(tmp_path / "o")]
    res = run_bounded(*args, "--cache-dir", str(recorded), "--mirror", str(none))
    assert_refused(res, 4, _damaged(recorded / name, "test", f" --cache-dir {recorded}"))
    assert not (tmp_path / "o").exists()


def test_a_damaged_train_split_stops_train(
    filled: MiniMnist, cache_dir: Path, tmp_path: Path
) -> None:
    command = pinned_command(cache_dir)  # the generated files are the pinned ones
    name = "train-labels-idx1-ubyte"
    _change_a_label(cache_dir / name)
    none = tmp_path / "none"
    args = ("train", "--epochs", "1", "--out", str(tmp_path / "w.pkl"), "--mirror", str(none))
    res = run_bounded(*args, "--cache-dir", str(cache_dir), command=command)
    assert_refused(res, 4, _damaged(cache_dir / name, "train", ""))
    assert not (tmp_path / "w.pkl").exists()


def _garbage_stamps(p: Path) -> None:
    """Forged lines for the right names, then 100 MB of noise."""
    names = [name for name, _ in DAMAGE.values()]
    lines = "".join(f"{name} 1 2 3 4 {'0' * 64}\n" for name in names)
    with open(p, "wb") as f:
        f.write(lines.encode())
        f.truncate(10**8)


STAMP_FILES: dict[str, Callable[[Path], object]] = {
    "a FIFO": os.mkfifo,
    "a folder": os.mkdir,
    "garbage": _garbage_stamps,
}


@pytest.mark.parametrize("case", list(STAMP_FILES))
def test_odd_stamps_only_mean_hashing_again(recorded: Path, case: str) -> None:
    (recorded / ".verified").unlink()
    STAMP_FILES[case](recorded / ".verified")
    _change_a_label(recorded / "t10k-labels-idx1-ubyte")
    res = run_bounded("evaluate", "-q", "--cache-dir", str(recorded))
    damaged = recorded / "t10k-labels-idx1-ubyte"
    assert_refused(res, 4, _damaged(damaged, "test", f" --cache-dir {recorded}"))


@pytest.mark.parametrize(
    ("make", "kind"),
    [(os.mkfifo, "a FIFO (named pipe)"), (_symlink("/dev/zero"), "a character device")],
    ids=["FIFO", "symlink to /dev/zero"],
)
def test_odd_metadata_beside_good_weights_is_a_warning(
    tmp_path: Path, make: Callable[[Path], object], kind: str
) -> None:
    from mnist_infer.weights import save_weights

    p = tmp_path / "w.pkl"
    save_weights(_params(), p)
    side = tmp_path / "w.pkl.json"
    make(side)
    res = run_bounded("info", str(p))
    assert res.returncode == 0
    assert res.stdout.startswith(f"File:       {p}\n")
    assert res.stderr == (
        f"Warning: cannot read metadata {side}: is {kind}, expected a regular file;"
        " showing the weights without it\n"
    )
