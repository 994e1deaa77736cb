from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from crafted import RECONSTRUCT, SCALAR, Call
from PIL import Image

from mnist_infer.cli import cli
from mnist_infer.errors import UnsafePickleError, UsageError, WeightsError
from mnist_infer.network import Network
from mnist_infer.novelty import DEFAULT_RULE
from mnist_infer.shipped import DEFAULT_NAME, SHIPPED, default_weights_path, weights_path
from mnist_infer.weights import (
    describe,
    file_sha256,
    load_weights,
    read_metadata,
    read_weights,
    save_weights,
)

REPO = Path(__file__).resolve().parent.parent
SIZES = (784, 50, 100, 10)


def make_params(sizes: tuple[int, ...] = SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for i in range(1, len(sizes)):
        params[f"W{i}"] = rng.normal(size=(sizes[i - 1], sizes[i])).astype(np.float32)
        params[f"b{i}"] = rng.normal(size=sizes[i]).astype(np.float32)
    return params


def write_pickle(path: Path, obj: object, protocol: int | None = None) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _array_pickle(state: tuple[object, ...]) -> bytes:
    """{"W1": an array rebuilt as numpy does, from `state`}, pickled."""
    return pickle.dumps({"W1": Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=state)}, 2)


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_textbook_style_pickles_of_every_protocol_load(tmp_path: Path, protocol: int) -> None:
    params = make_params()
    params["W1"] = np.asfortranarray(params["W1"])  # as in the textbook's file
    params["W2"] = params["W2"].astype(">f8")
    p = write_pickle(tmp_path / "w.pkl", params, protocol)
    loaded = load_weights(p)
    assert_same(loaded, pickle.loads(p.read_bytes()))  # byte order as numpy unpickles it
    for k, a in params.items():
        np.testing.assert_array_equal(loaded[k], a, err_msg=k)


def test_textbook_sample_weights_load(reference_weights: Path) -> None:
    params = load_weights(reference_weights)
    with open(reference_weights, "rb") as f:
        assert_same(params, pickle.load(f))  # a file we trust, so plain pickle may load it
    assert all(type(a) is np.ndarray for a in params.values())
    assert [params[f"W{i}"].shape[1] for i in (1, 2, 3)] == [50, 100, 10]


def test_old_numpy_module_names_load_without_warnings(tmp_path: Path) -> None:
    params = make_params()
    data = pickle.dumps(params, protocol=2)
    assert b"numpy._core.multiarray" in data
    p = tmp_path / "old.pkl"
    p.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_weights(p), params)


def test_float64_and_other_chains_load(tmp_path: Path) -> None:
    params = {k: v.astype(np.float64) for k, v in make_params((784, 32, 10)).items()}
    assert_same(load_weights(write_pickle(tmp_path / "w.pkl", params)), params)


@pytest.mark.parametrize("name", ["w.pkl", "w.pickle", "w.npz"])
def test_save_then_load(tmp_path: Path, name: str) -> None:
    params = make_params()
    p = tmp_path / "sub" / name
    save_weights(params, p)
    assert_same(load_weights(p), params)
    assert read_metadata(p) is None
    assert [q.name for q in p.parent.iterdir()] == [name]  # no temporary files left
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_saved_pickle_is_the_textbook_dict(tmp_path: Path) -> None:
    params = {k: v.astype(np.float64) for k, v in make_params().items()}
    p = tmp_path / "w.pkl"
    save_weights(params, p)
    with open(p, "rb") as f:
        plain = pickle.load(f)
    assert type(plain) is dict
    assert list(plain) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert_same(plain, {k: v.astype(np.float32) for k, v in params.items()})


def test_saved_npz_loads_with_numpy(tmp_path: Path) -> None:
    params = make_params()
    p = tmp_path / "w.npz"
    save_weights(params, p)
    with np.load(p, allow_pickle=False) as z:
        assert_same({k: z[k] for k in z.files}, params)


def test_metadata_beside_the_weights(tmp_path: Path) -> None:
    p = tmp_path / "w.pkl"
    meta = {"epochs": 3, "test_accuracy": 0.97, "note": "π"}
    save_weights(make_params(), p, metadata=meta)
    assert json.loads((tmp_path / "w.pkl.json").read_text(encoding="utf-8")) == meta
    assert read_metadata(p) == meta
    save_weights(make_params(seed=1), p)  # new weights without metadata: the old sidecar goes
    assert read_metadata(p) is None
    assert not (tmp_path / "w.pkl.json").exists()


BAD_SIDECARS: dict[str, tuple[bytes | None, str]] = {
    "invalid JSON": (
        b"{",
        "invalid JSON (Expecting property name enclosed in double quotes: line 1 column 2"
        " (char 1))",
    ),
    "a list": (b"[1, 2]", "expected a JSON object, found list"),
    "not UTF-8": (b"\xff", "not UTF-8 text"),
    "a folder": (None, "is a directory, expected a regular file"),
    "nested too deep": (b"[" * 100_000, "JSON nested too deep"),
    "too large": (b" " * (2**20 + 1), "the file is 1,048,577 bytes, expected at most 1,048,576"),
}


def _bad_sidecar(p: Path, case: str) -> Path:
    content = BAD_SIDECARS[case][0]
    side = p.with_name(p.name + ".json")
    if content is None:
        side.mkdir()
    else:
        side.write_bytes(content)
    return side


@pytest.mark.parametrize("case", list(BAD_SIDECARS))
def test_bad_metadata(tmp_path: Path, case: str) -> None:
    p = tmp_path / "w.pkl"
    save_weights(make_params(), p)
    side = _bad_sidecar(p, case)
    with pytest.raises(WeightsError) as e:
        read_metadata(p)
    assert str(e.value) == f"cannot read metadata {side}: {BAD_SIDECARS[case][1]}"
    d = describe(p)  # the weights are fine, so info shows them
    assert (d.sizes, d.metadata, d.metadata_error) == (list(SIZES), None, str(e.value))


@pytest.mark.parametrize("case", list(BAD_SIDECARS))
def test_info_warns_about_bad_metadata(tmp_path: Path, case: str) -> None:
    p = tmp_path / "w.pkl"
    save_weights(make_params(), p)
    without = run_cli("info", str(p))
    side = _bad_sidecar(p, case)
    res = run_cli("info", str(p))
    assert res.exit_code == 0, res.output
    assert res.stdout == without.stdout
    assert res.stderr == (
        f"Warning: cannot read metadata {side}: {BAD_SIDECARS[case][1]};"
        " showing the weights without it\n"
    )


def test_info_does_not_show_metadata_of_another_file(tmp_path: Path) -> None:
    p = tmp_path / "w.pkl"
    save_weights(make_params(seed=1), p)
    without = run_cli("info", str(p))
    save_weights(make_params(seed=2), tmp_path / "other.pkl")
    other_sha = file_sha256(tmp_path / "other.pkl")
    side = tmp_path / "w.pkl.json"
    side.write_text(json.dumps({"weights_sha256": other_sha, "test_accuracy": 0.76}))
    res = run_cli("info", str(p))
    assert res.exit_code == 0, res.output
    assert res.stdout == without.stdout
    assert res.stderr == (
        f"Warning: the metadata in {side} describes another file (SHA-256 {other_sha[:12]}…,"
        f" this file's is {file_sha256(p)[:12]}…); showing the weights without it\n"
    )


def test_save_rejects_unknown_suffix(tmp_path: Path) -> None:
    p = tmp_path / "w.txt"
    with pytest.raises(UsageError) as e:
        save_weights(make_params(), p)
    assert str(e.value) == f"cannot save weights as {p}: unknown suffix '.txt' (use .pkl or .npz)"
    assert not p.exists()


def test_save_rejects_invalid_params_and_writes_nothing(tmp_path: Path) -> None:
    params = make_params()
    del params["b2"]
    p = tmp_path / "w.pkl"
    with pytest.raises(WeightsError) as e:
        save_weights(params, p, metadata={"a": 1})
    assert str(e.value) == f"weights for {p}: missing key 'b2' (expected W1..W3 and b1..b3)"
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_values_too_big_for_float32(tmp_path: Path) -> None:
    params = {k: v.astype(np.float64) for k, v in make_params().items()}
    params["W2"][0, 0] = 1e300
    p = tmp_path / "w.npz"
    with pytest.raises(WeightsError) as e:
        save_weights(params, p)
    assert str(e.value) == (
        f"weights for {p}: W2 holds 1 value too large for float32 (largest magnitude 1e+300),"
        " expected magnitudes up to 3.4e+38"
    )
    assert list(tmp_path.iterdir()) == []


def test_sha256(tmp_path: Path) -> None:
    p = tmp_path / "w.pkl"
    save_weights(make_params(), p)
    want = hashlib.sha256(p.read_bytes()).hexdigest()
    assert file_sha256(p) == want
    assert read_weights(p)[1] == want


# --- unsafe pickles: refused before anything runs -----------------------------------


def _evil_payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Pickles that create `marker` when loaded by plain pickle, with the global refused."""
    m = str(marker)
    code = f"open({m!r}, 'w').close()"
    array = pickle.dumps(np.zeros((2, 2), np.float32), protocol=3)[2:-1]  # body without PROTO/STOP
    return {
        "os.system": (f"cos\nsystem\n(S'touch {m}'\ntR.".encode(), "os.system"),
        "posix.system": (f"cposix\nsystem\n(S'touch {m}'\ntR.".encode(), "posix.system"),
        "subprocess.Popen": (
            f"csubprocess\nPopen\n((S'touch'\nS'{m}'\nltR.".encode(),
            "subprocess.Popen",
        ),
        "subprocess.check_call": (
            f"csubprocess\ncheck_call\n((S'touch'\nS'{m}'\nltR.".encode(),
            "subprocess.check_call",
        ),
        "builtins.eval": (f"cbuiltins\neval\n(V{code}\ntR.".encode(), "builtins.eval"),
        "builtins.exec": (f"cbuiltins\nexec\n(V{code}\ntR.".encode(), "builtins.exec"),
        "__builtin__.eval": (f"c__builtin__\neval\n(V{code}\ntR.".encode(), "__builtin__.eval"),
        "builtins.getattr chain": (
            (
                "cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR"
                f"(S'touch {m}'\ntR."
            ).encode(),
            "builtins.getattr",
        ),
        "numpy runstring": (
            f"cnumpy.testing._private.utils\nrunstring\n(V{code}\n(dtR.".encode(),
            "numpy.testing._private.utils.runstring",
        ),
        "inside a dict value, after a real array": (
            b"\x80\x03}(X\x02\x00\x00\x00W1"
            + array
            + b"X\x02\x00\x00\x00b1"
            + pickle.dumps(Call(eval, code), protocol=3)[2:-1]
            + b"u.",
            "builtins.eval",
        ),
        "protocol 5, nested": (
            pickle.dumps({"W1": {"deep": [Call(os.system, f"touch {m}")]}}, protocol=5),
            f"{os.system.__module__}.system",
        ),
    }


PAYLOADS = list(_evil_payloads(Path("m")))


def _wait_for(path: Path, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.02)
    return path.exists()


@pytest.mark.parametrize("name", PAYLOADS)
def test_payload_really_runs_code_with_plain_pickle(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "marker"
    data, _ = _evil_payloads(marker)[name]
    # In a child process, so nothing it starts can outlive the check.
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=30)
    assert _wait_for(marker)


@pytest.mark.parametrize("name", PAYLOADS)
def test_unsafe_pickle_is_refused_before_running(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "marker"
    data, glob = _evil_payloads(marker)[name]
    p = tmp_path / "evil.pkl"
    p.write_bytes(data)
    with pytest.raises(UnsafePickleError) as e:
        load_weights(p)
    assert str(e.value) == (
        f"refusing to load {p}: global {glob} is not allowed"
        " (a weights pickle may only rebuild numpy arrays; this one could run code)"
    )
    assert not _wait_for(marker, 0.3)


@pytest.mark.parametrize("command", ["info", "evaluate"])
def test_unsafe_pickle_is_refused_by_the_cli(tmp_path: Path, command: str) -> None:
    marker = tmp_path / "marker"
    data, glob = _evil_payloads(marker)["os.system"]
    p = tmp_path / "evil.pkl"
    p.write_bytes(data)
    args = [command, str(p)] if command == "info" else [command, "--weights", str(p)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 5
    assert res.stderr == (
        f"Error: refusing to load {p}: global {glob} is not allowed"
        " (a weights pickle may only rebuild numpy arrays; this one could run code)\n"
    )
    assert not marker.exists()


NDARRAY_CALL = (
    "a direct call of numpy.ndarray is not allowed (numpy's pickles only pass it to"
    " _reconstruct; a direct call makes arrays of any size without their data)"
)
SHAPED = (
    "numpy's _reconstruct is only allowed with the empty shape (0,), found (784, 100000)"
    " (the array's data must come from the file)"
)
OBJECTS = (
    "dtype 'O8' is not allowed (a weights pickle may only hold arrays of bool, integer, float or"
    " complex numbers)"
)
FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
F4x4 = (1, (4,), np.dtype("f4"), False, bytes(16))
F4 = (np.dtype("f4"), (4,), "C")


def _built_twice() -> bytes:
    """{"W1": an array whose BUILD runs a second time}, as a hand-written protocol 2 pickle."""
    body = pickle.dumps(Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=F4x4), 2)[2:-1]
    state = pickle.dumps((1, (1,), np.dtype("f4"), False, bytes(4)), 2)[2:-1]
    # DUP the built array, BUILD it again, POP the copy, then SETITEM it under "W1".
    return b"\x80\x02}X\x02\x00\x00\x00W1" + body + b"2" + state + b"b0s."


# Pickles that name only allowed globals, yet would make numpy use memory the file does not fill.
NUMPY_TRICKS: dict[str, tuple[bytes, str]] = {
    "ndarray called directly": (
        pickle.dumps({"W1": Call(np.ndarray, (784, 100000), "f8")}, 2),
        NDARRAY_CALL,
    ),
    "ndarray called by protocol 0": (
        b"(dS'W1'\ncnumpy\nndarray\n((I784\nI100000\ntS'f8'\ntRs.",
        NDARRAY_CALL,
    ),
    "_reconstruct with a shape": (
        pickle.dumps({"W1": Call(RECONSTRUCT, np.ndarray, (784, 100000), b"b")}, 2),
        SHAPED,
    ),
    "_reconstruct with a shape, old module name": (
        pickle.dumps({"W1": Call(RECONSTRUCT, np.ndarray, (784, 100000), b"b")}, 2).replace(
            b"numpy._core.", b"numpy.core."
        ),
        SHAPED,
    ),
    "_reconstruct of another class": (
        pickle.dumps({"W1": Call(RECONSTRUCT, frozenset, (0,), b"b")}, 2),
        "numpy's _reconstruct is only allowed for numpy.ndarray",
    ),
    # numpy reads past the end of a short item list: a crash, or worse.
    "object array": (_array_pickle((1, (100000,), np.dtype("O"), False, [])), OBJECTS),
    "object scalar": (pickle.dumps({"W1": Call(SCALAR, np.dtype("O"), 1.0)}, 2), OBJECTS),
    # A view of an array's memory would dangle once a second BUILD frees that memory.
    "_frombuffer on an array": (
        pickle.dumps(
            {"W1": Call(FROMBUFFER, Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=F4x4), *F4)},
            2,
        ),
        "numpy's _frombuffer is only allowed on bytes, found ndarray",
    ),
    "array state set twice": (_built_twice(), "setting an array's state twice is not allowed"),
    # Nested "hex" encodings double the size at each level: 31 of them make gigabytes.
    "_codecs.encode with another codec": (
        pickle.dumps({"W1": Call(codecs.encode, b"00", "hex")}, 2),
        "_codecs.encode is only allowed on a str with the latin1 codec, found bytes with 'hex'",
    ),
}


@pytest.mark.parametrize("case", list(NUMPY_TRICKS))
def test_numpy_tricks_are_refused(tmp_path: Path, case: str) -> None:
    data, reason = NUMPY_TRICKS[case]
    p = tmp_path / "w.pkl"
    p.write_bytes(data)
    with pytest.raises(UnsafePickleError) as e:
        load_weights(p)
    assert str(e.value) == f"refusing to load {p}: {reason}"
    res = run_cli("info", str(p))
    assert res.exit_code == 5
    assert res.stderr == f"Error: refusing to load {p}: {reason}\n"


def _forged_dtype(kind: str, flags: int) -> Call:
    """A dtype whose pickled state sets numpy's internal flags, e.g. "items are pointers"."""
    return Call(np.dtype, kind, False, True, state=(3, "|", None, None, None, 8, 1, flags))


def test_forged_dtype_flags_are_refused(tmp_path: Path) -> None:
    params = {k: v.astype(np.float64) for k, v in make_params().items()}
    dtype = _forged_dtype("f8", 0x3F)
    forged = {
        k: Call(RECONSTRUCT, np.ndarray, (0,), b"b", state=(1, v.shape, dtype, False, v.tobytes()))
        for k, v in params.items()
    }
    p = write_pickle(tmp_path / "w.pkl", forged, 2)
    with pytest.raises(UnsafePickleError) as e:
        load_weights(p)
    assert str(e.value) == (
        f"refusing to load {p}: the state of dtype 'f8' is not that of a plain numeric dtype"
        " (expected (3, byte order, None, None, None, -1, -1, 0), found"
        " (3, '|', None, None, None, 8, ...))"
    )


def test_forged_dtype_cannot_make_a_scalar_read_pointers(tmp_path: Path) -> None:
    # With these flags numpy's own scalar() takes the 8 bytes for a pointer and crashes.
    forged = {**make_params(), "W1": Call(SCALAR, _forged_dtype("V8", 0x21), b"A" * 8)}
    p = write_pickle(tmp_path / "w.pkl", forged, 2)
    with pytest.raises(UnsafePickleError) as e:
        load_weights(p)
    assert str(e.value) == (
        f"refusing to load {p}: dtype 'V8' is not allowed (a weights pickle may only hold arrays"
        " of bool, integer, float or complex numbers)"
    )


# --- unreadable and invalid files -------------------------------------------------


def _truncated(p: Path) -> None:
    data = pickle.dumps(make_params())
    p.write_bytes(data[: len(data) // 2])


def _corrupt_npz(p: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, **make_params())
    data = buf.getvalue()
    p.write_bytes(data[: len(data) // 3])


def _object_npz(p: Path) -> None:
    params: dict[str, np.ndarray] = dict(make_params())
    params["W1"] = np.array([[1, "x"]], dtype=object)
    with open(p, "wb") as f:
        np.savez(f, **params)


FILE_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing": (lambda p: None, "cannot read weights {p}: no such file"),
    "directory": (
        lambda p: p.mkdir(),
        "cannot read weights {p}: is a directory, expected a regular file",
    ),
    "empty": (lambda p: p.write_bytes(b""), "cannot load weights {p}: the file is empty"),
    "truncated pickle": (_truncated, "cannot load weights {p}: truncated or corrupt pickle"),
    # numpy's __setstate__ checks the data's length: no uninitialised memory.
    "array data too short": (
        lambda p: p.write_bytes(_array_pickle((1, (784, 50), np.dtype("f4"), False, b"short"))),
        "cannot load weights {p}: truncated or corrupt pickle",
    ),
    "garbage after proto": (
        lambda p: p.write_bytes(b"\x80\x04garbage"),
        "cannot load weights {p}: truncated or corrupt pickle",
    ),
    "text file": (
        lambda p: p.write_text("hello world\n"),
        "cannot load weights {p}: not a pickle or .npz file",
    ),
    "png file": (
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100)),
        "cannot load weights {p}: not a pickle or .npz file",
    ),
    "corrupt npz": (_corrupt_npz, "cannot load weights {p}: corrupt .npz archive"),
    "npz with object arrays": (
        _object_npz,
        "cannot load weights {p}: the .npz holds object arrays (refused: loading them could run"
        " code)",
    ),
    "a list, not a dict": (
        lambda p: write_pickle(p, [1, 2]),
        "{p}: expected a dict of arrays W1..Wn, b1..bn, found list",
    ),
    "empty dict": (
        lambda p: write_pickle(p, {}),
        "{p}: missing key 'W1' (expected arrays W1..Wn and b1..bn, found keys: none)",
    ),
    # A key nested 2000 deep: repr() of it alone would raise RecursionError.
    "deeply nested key": (
        lambda p: p.write_bytes(b"\x80\x02}K\x00" + b"\x85" * 2000 + b"K\x01s."),
        "refusing to load {p}: dict keys and set items must be strings, bytes or numbers"
        " (a weights pickle maps names to arrays), found tuple",
    ),
    "deeply nested extra key": (
        lambda p: p.write_bytes(
            pickle.dumps(make_params(), 2)[:-1] + b"K\x00" + b"\x85" * 2000 + b"K\x01s."
        ),
        "refusing to load {p}: dict keys and set items must be strings, bytes or numbers"
        " (a weights pickle maps names to arrays), found tuple",
    ),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_unreadable_file(tmp_path: Path, case: str) -> None:
    make, message = FILE_CASES[case]
    p = tmp_path / "w.pkl"
    make(p)
    with pytest.raises(WeightsError) as e:
        load_weights(p)
    assert str(e.value) == message.format(p=p)


@pytest.mark.parametrize("case", list(FILE_CASES))
@pytest.mark.parametrize("command", ["info", "evaluate"])
def test_unreadable_file_via_cli(tmp_path: Path, case: str, command: str) -> None:
    make, message = FILE_CASES[case]
    p = tmp_path / "w.pkl"
    make(p)
    args = [command, str(p)] if command == "info" else [command, "--weights", str(p)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 5
    assert res.stderr == f"Error: {message.format(p=p)}\n"


def test_npz_arrays_too_large_once_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit is lowered: at the real one (1 GiB) a test would inflate a gigabyte.
    monkeypatch.setattr("mnist_infer.weights.MAX_NPZ_BYTES", 2**20)
    p = tmp_path / "w.npz"
    np.savez_compressed(p, **{**make_params(), "W1": np.zeros((784, 500), np.float32)})
    assert p.stat().st_size < 2**20 < 784 * 500 * 4
    with zipfile.ZipFile(p) as z:
        size = sum(i.file_size for i in z.infolist())
    with pytest.raises(WeightsError) as e:
        load_weights(p)
    assert str(e.value) == (
        f"cannot load weights {p}: its arrays take {size / 2**20:.1f} MiB uncompressed,"
        " expected at most 1.0 MiB"
    )


def test_npz_keys_that_cannot_be_weights_are_not_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mnist_infer.weights.MAX_NPZ_BYTES", 2**20)
    p = tmp_path / "w.npz"
    np.savez_compressed(p, **make_params(), junk=np.zeros(2**22, np.uint8))
    with pytest.raises(WeightsError) as e:
        load_weights(p)
    assert str(e.value) == f"{p}: unexpected key 'junk' (expected only W1..W3 and b1..b3)"


def _with(**changes: object) -> Callable[[], dict[str, object]]:
    def make() -> dict[str, object]:
        params: dict[str, object] = dict(make_params())
        for k, v in changes.items():
            if v is None:
                del params[k]
            else:
                params[k] = v
        return params

    return make


def _beyond_float32() -> np.ndarray:
    w = make_params()["W1"].astype(np.float64)
    w[0, :3] = [1e300, -2e300, 1e39]  # finite, but inf once the network makes them float32
    return w


f32 = np.float32
INVALID: dict[str, tuple[Callable[[], dict[str, object]], str]] = {
    "missing b2": (_with(b2=None), "missing key 'b2' (expected W1..W3 and b1..b3)"),
    "gap before W5": (
        _with(W5=np.zeros((10, 10), f32)),
        "unexpected key 'W5' (expected only W1..W3 and b1..b3)",
    ),
    "stray key": (
        _with(lr=np.zeros(1, f32)),
        "unexpected key 'lr' (expected only W1..W3 and b1..b3)",
    ),
    "integer weights": (
        _with(W2=np.zeros((50, 100), np.int64)),
        "W2 has dtype int64, expected a real floating dtype (float32 or float64)",
    ),
    "complex bias": (
        _with(b1=np.zeros(50, np.complex64)),
        "b1 has dtype complex64, expected a real floating dtype (float32 or float64)",
    ),
    "1-D weights": (
        _with(W1=np.zeros(784, f32)),
        "W1 has shape (784,), expected a non-empty 2-D array (inputs, outputs)",
    ),
    "empty layer": (
        _with(W1=np.zeros((784, 0), f32)),
        "W1 has shape (784, 0), expected a non-empty 2-D array (inputs, outputs)",
    ),
    "wrong input size": (
        _with(W1=np.zeros((700, 50), f32)),
        "W1 has shape (700, 50), expected (784, *): one row per pixel",
    ),
    "broken chain": (
        _with(W2=np.zeros((40, 100), f32)),
        "W2 has shape (40, 100), expected (50, *) to follow W1 (784, 50)",
    ),
    "wrong output size": (
        _with(W3=np.zeros((100, 9), f32), b3=np.zeros(9, f32)),
        "W3 has shape (100, 9), expected (*, 10): one column per digit",
    ),
    "2-D bias": (
        _with(b1=np.zeros((50, 1), f32)),
        "b1 has shape (50, 1), expected (50,) to match W1 (784, 50)",
    ),
    "short bias": (
        _with(b2=np.zeros(99, f32)),
        "b2 has shape (99,), expected (100,) to match W2 (50, 100)",
    ),
    "NaN weight": (
        _with(W2=np.full((50, 100), np.nan, f32)),
        "W2 holds 5000 non-finite values (NaN or inf), expected finite numbers",
    ),
    "one inf bias": (
        _with(b3=np.array([0, 0, 0, np.inf, 0, 0, 0, 0, 0, 0], f32)),
        "b3 holds 1 non-finite value (NaN or inf), expected finite numbers",
    ),
    "float64 beyond float32": (
        _with(W1=_beyond_float32()),
        "W1 holds 3 values too large for float32 (largest magnitude 2e+300),"
        " expected magnitudes up to 3.4e+38",
    ),
    "sums beyond float32": (
        _with(W3=np.full((100, 10), 3e37, f32)),
        "W3 and b3 can make a unit's input as large as 3e+39 (the sum of |weights| plus"
        " |bias|), expected at most 3.4e+38 so that float32 does not overflow",
    ),
    "one bias just beyond float32": (
        _with(b3=np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, -3.41e38])),
        "b3 holds 1 value too large for float32 (largest magnitude 3.41e+38),"
        " expected magnitudes up to 3.4e+38",
    ),
}


@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_arrays(tmp_path: Path, case: str, suffix: str) -> None:
    make, message = INVALID[case]
    p = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        with open(p, "wb") as f:
            np.savez(f, **make())  # type: ignore[arg-type]
    else:
        write_pickle(p, make())
    with pytest.raises(WeightsError) as e:
        load_weights(p)
    assert str(e.value) == f"{p}: {message}"


def test_value_that_is_not_an_array(tmp_path: Path) -> None:
    p = write_pickle(tmp_path / "w.pkl", _with(W1=[[0.0] * 50] * 784)())
    with pytest.raises(WeightsError) as e:
        load_weights(p)
    assert str(e.value) == f"{p}: W1 is a list, expected a numpy array"


@pytest.mark.parametrize(
    "case", ["broken chain", "NaN weight", "float64 beyond float32", "sums beyond float32"]
)
def test_invalid_arrays_via_cli(tmp_path: Path, case: str) -> None:
    make, message = INVALID[case]
    p = write_pickle(tmp_path / "w.pkl", make())
    digit = tmp_path / "digit.png"
    Image.fromarray(np.pad(np.full((20, 4), 255, np.uint8), 4)).save(digit)
    for args in (
        ["info", str(p)],
        ["evaluate", "--weights", str(p)],
        ["predict", "--json", "--weights", str(p), str(digit)],
    ):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 5
        assert res.stderr == f"Error: {p}: {message}\n"


def test_network_checks_its_own_dtype() -> None:
    params = {**make_params(), "W1": _beyond_float32()}
    with pytest.raises(WeightsError) as e:
        Network(params)
    assert str(e.value) == "network parameters: " + INVALID["float64 beyond float32"][1]
    assert Network(params, dtype=np.float64).params["W1"][0, 1] == -2e300


# --- info and the default weights ---------------------------------------------------


def test_info(tmp_path: Path) -> None:
    p = tmp_path / "w.npz"
    save_weights(make_params(), p, metadata={"epochs": 2, "source": "test", "sizes": [1, 2]})
    res = CliRunner().invoke(cli, ["info", str(p)])
    assert res.exit_code == 0, res.output
    assert res.output == (
        f"File:       {p}\n"
        "Format:     npz (numpy zip archive)\n"
        "Layers:     784 → 50 → 100 → 10\n"
        "Dtype:      float32\n"
        "Parameters: 45,360\n"
        f"SHA-256:    {hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        f"Rule:       {DEFAULT_RULE.text()}\n"
        "Metadata:\n"
        "  epochs: 2\n"
        "  sizes: [1, 2]\n"
        "  source: test\n"
    )


def test_info_without_metadata(tmp_path: Path) -> None:
    params = make_params((784, 20, 10))
    params["b1"] = params["b1"].astype(np.float64)
    p = write_pickle(tmp_path / "w.pkl", params)
    res = CliRunner().invoke(cli, ["info", str(p)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1:5] == [
        "Format:     pickle (the textbook's dict of arrays)",
        "Layers:     784 → 20 → 10",
        "Dtype:      float32, float64",
        f"Parameters: {784 * 20 + 20 + 20 * 10 + 10:,}",
    ]
    assert lines[-1] == "Metadata:   none"
    d = describe(p)
    assert (d.sizes, d.parameters) == ([784, 20, 10], 784 * 20 + 20 + 20 * 10 + 10)


def test_default_weights_are_the_repositorys_weights_inside_the_package() -> None:
    from importlib.resources import files

    p = default_weights_path(check=False)
    assert p == Path(str(files("mnist_infer._shipped"))) / DEFAULT_NAME
    assert p.read_bytes() == (REPO / "weights" / DEFAULT_NAME).read_bytes()


def test_shipped_weights_are_valid() -> None:
    p = default_weights_path()
    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"File:       {p}\n")
    assert "Layers:     784 → 800 → 300 → 10\n" in res.output


def test_installed_package_without_weights_asks_for_weights(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(REPO / "mnist_infer", site / "mnist_infer")
    (site / "mnist_infer" / "_shipped").mkdir()
    (site / "mnist_infer" / "_shipped" / "__init__.py").touch()  # the package, not its data
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-m", "mnist_infer", "info"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    missing = site / "mnist_infer" / "_shipped" / DEFAULT_NAME
    assert out.returncode == 5
    assert out.stderr == (
        f"Error: no default weights: {missing} is missing from the installed package;"
        " reinstall mnist-infer, or pass --weights PATH\n"
    )


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_short_names_are_the_shipped_weights(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert weights_path(name) == default_weights_path(name=SHIPPED[name])
    assert weights_path(None) == default_weights_path()
    res = CliRunner().invoke(cli, ["info", name])
    assert res.exit_code == 0, res.output
    assert SHIPPED[name].removeprefix("mnist-mlp-").removesuffix(".pkl") in res.output
    (tmp_path / name).write_bytes(b"")  # a file of that name wins
    assert weights_path(name) == Path(name)


def test_small_is_the_books_shape() -> None:
    p = load_weights(weights_path("small"))
    assert [p[f"W{i}"].shape for i in (1, 2, 3)] == [(784, 50), (50, 100), (100, 10)]


def test_a_file_larger_than_its_size_says_is_read_no_further_than_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mnist_infer.weights.MAX_WEIGHTS_BYTES", 16)
    p = Path("/proc/self/environ")  # its size says 0
    if not p.is_file() or len(p.read_bytes()) <= 16:
        pytest.skip("no /proc/self/environ of over 16 bytes here")
    with pytest.raises(WeightsError) as e:
        load_weights(p)
    assert (
        str(e.value)
        == f"cannot load weights {p}: the file is over 16 bytes, expected at most 16 (0 MiB)"
    )
