"""Weights files: the textbook's pickled dict (loaded without running code) or .npz."""

from __future__ import annotations

import io
import os
import pickle
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple, NoReturn

import numpy as np
from numpy.typing import DTypeLike

from mnist_infer.errors import UnsafePickleError, UsageError, WeightsError
from mnist_infer.files import atomic_write

INPUTS = 784
OUTPUTS = 10
DEFAULT_NAME = "mnist-mlp-784-50-100-10.pkl"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_SUFFIXES = (".pkl", ".pickle")
MAX_NPZ_BYTES = 2**30


# --- safe unpickling -----------------------------------------------------------


class _Refused(Exception):
    """Something a weights pickle may not do; the message says what."""


class _NdarrayName:
    """What a pickle gets for numpy.ndarray: numpy's pickles only pass it to _reconstruct."""

    __slots__ = ()

    def __call__(self, *args: object) -> NoReturn:
        # ndarray(shape, dtype) allocates any size of uninitialised memory from a tiny file.
        raise _Refused(
            "a direct call of numpy.ndarray is not allowed (numpy's pickles only pass it to"
            " _reconstruct; a direct call makes arrays of any size without their data)"
        )


_NDARRAY = _NdarrayName()


def _plain_dtype(dtype: Any) -> np.dtype:
    """A fresh copy of a dtype, refused if it holds Python objects.

    Pickled dtypes are rebuilt by dtype.__setstate__, which accepts any internal flags:
    forged ones make numpy read pointers from the file's bytes (crashes, leaked addresses),
    as do object arrays whose list of items is shorter than their shape.
    """
    dt = np.dtype(np.dtype(dtype).str)
    if dt.hasobject:
        raise _Refused(
            "arrays of Python objects are not allowed (a weights pickle may only rebuild"
            " numeric arrays)"
        )
    return dt


class _Array(np.ndarray):
    """What _reconstruct makes, so that BUILD checks the dtype before numpy sets the data.

    _from_pickle hands out plain np.ndarray views of these.
    """

    def __setstate__(self, state: Any) -> None:
        # A second BUILD would free the data that views made by _frombuffer still point at.
        if getattr(self, "_built", False):
            raise _Refused("setting an array's state twice is not allowed")
        self._built = True
        checked: Any = tuple(_plain_dtype(x) if isinstance(x, np.dtype) else x for x in state)
        super().__setstate__(checked)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a weights pickle may name: what numpy needs to rebuild arrays."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    def _reconstruct(cls: object, shape: object, dtype: object) -> Any:
        # numpy's pickles make an empty array here; BUILD then sets shape, dtype and data.
        if cls is not _NDARRAY:
            raise _Refused("numpy's _reconstruct is only allowed for numpy.ndarray")
        if not isinstance(shape, tuple) or shape != (0,):
            raise _Refused(
                f"numpy's _reconstruct is only allowed with the empty shape (0,), found"
                f" {reprlib.repr(shape)} (the array's data must come from the file)"
            )
        return multiarray._reconstruct(_Array, (0,), _plain_dtype(dtype))

    def scalar(dtype: object, *args: object) -> Any:
        return multiarray.scalar(_plain_dtype(dtype), *args)

    def _frombuffer(buf: object, dtype: object, *args: object) -> np.ndarray:
        # Only the file's own bytes: a view of another array would outlive that array's data.
        if not isinstance(buf, bytes | bytearray):
            raise _Refused(
                f"numpy's _frombuffer is only allowed on bytes, found {type(buf).__name__}"
            )
        return numeric._frombuffer(buf, _plain_dtype(dtype), *args)  # type: ignore[attr-defined]

    def encode(obj: object, encoding: object = "utf-8") -> bytes:
        # Protocols 0-2 store bytes as encode(str, "latin1"); other codecs (hex, zlib, ...)
        # could grow a tiny file into gigabytes.
        if not isinstance(obj, str) or encoding != "latin1":
            raise _Refused(
                "_codecs.encode is only allowed on a str with the latin1 codec, found"
                f" {type(obj).__name__} with {reprlib.repr(encoding)}"
            )
        return obj.encode("latin1")

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): encode,
    }
    # Pickles name numpy's private module as it was called when they were written.
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        # Protocol 5 rebuilds contiguous arrays with _frombuffer.
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    for mod in ("builtins", "__builtin__"):
        allowed[(mod, "set")] = set
        allowed[(mod, "frozenset")] = frozenset
    return allowed


_ALLOWED: dict[tuple[str, str], Any] = {}


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals, so loading never runs code."""

    def __init__(self, file: IO[bytes]) -> None:
        # latin1 turns Python 2 array data back into bytes the way numpy expects.
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        if not _ALLOWED:
            _ALLOWED.update(_allowed_globals())
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise _Refused(
                f"global {module}.{name} is not allowed"
                " (a weights pickle may only rebuild numpy arrays; this one could run code)"
            )
        return obj


# --- validation ------------------------------------------------------------------


def _shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))


def _check_finite(a: np.ndarray, name: str, dtype: np.dtype) -> None:
    """Raise WeightsError unless a is finite, also once converted to the network's dtype."""
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise WeightsError(
            f"{name} holds {bad} non-finite value{'s' * (bad > 1)} (NaN or inf),"
            " expected finite numbers"
        )
    with np.errstate(over="ignore"):
        big = a.size - int(np.count_nonzero(np.isfinite(a.astype(dtype, copy=False))))
    if big:
        top, limit = float(np.abs(a).max()), float(np.finfo(dtype).max)
        raise WeightsError(
            f"{name} holds {big} value{'s' * (big > 1)} too large for {dtype}"
            f" (largest magnitude {top:.3g}), expected magnitudes up to {limit:.3g}"
        )


def check_params(
    params: object,
    source: str,
    *,
    inputs: int | None = INPUTS,
    outputs: int | None = OUTPUTS,
    dtype: DTypeLike = np.float32,
) -> int:
    """Check W1..Wn, b1..bn form a chain of layers, finite in `dtype`; return n or raise."""
    dt = np.dtype(dtype)
    if not isinstance(params, Mapping):
        raise WeightsError(
            f"{source}: expected a dict of arrays W1..Wn, b1..bn, found {type(params).__name__}"
        )
    n = 0
    while f"W{n + 1}" in params:
        n += 1
    if n == 0:
        found = ", ".join(sorted(reprlib.repr(k) for k in params)) or "none"
        raise WeightsError(
            f"{source}: missing key 'W1' (expected arrays W1..Wn and b1..bn, found keys: {found})"
        )
    names = [f"{c}{i}" for i in range(1, n + 1) for c in "Wb"]
    want = f"W1..W{n} and b1..b{n}" if n > 1 else "W1 and b1"
    for k in names:
        if k not in params:
            raise WeightsError(f"{source}: missing key {k!r} (expected {want})")
    for k in params:
        if k not in names:
            raise WeightsError(f"{source}: unexpected key {reprlib.repr(k)} (expected only {want})")
    prev: np.ndarray | None = None
    for i in range(1, n + 1):
        w, b = params[f"W{i}"], params[f"b{i}"]
        for k, a in ((f"W{i}", w), (f"b{i}", b)):
            if not isinstance(a, np.ndarray):
                raise WeightsError(f"{source}: {k} is a {type(a).__name__}, expected a numpy array")
            if not np.issubdtype(a.dtype, np.floating):
                raise WeightsError(
                    f"{source}: {k} has dtype {a.dtype}, expected a real floating dtype"
                    " (float32 or float64)"
                )
        if w.ndim != 2 or 0 in w.shape:
            raise WeightsError(
                f"{source}: W{i} has shape {_shape(w)}, expected a non-empty 2-D array"
                " (inputs, outputs)"
            )
        if prev is not None and w.shape[0] != prev.shape[1]:
            raise WeightsError(
                f"{source}: W{i} has shape {_shape(w)}, expected ({prev.shape[1]}, *)"
                f" to follow W{i - 1} {_shape(prev)}"
            )
        if i == 1 and inputs is not None and w.shape[0] != inputs:
            raise WeightsError(
                f"{source}: W1 has shape {_shape(w)}, expected ({inputs}, *): one row per pixel"
            )
        if i == n and outputs is not None and w.shape[1] != outputs:
            raise WeightsError(
                f"{source}: W{i} has shape {_shape(w)}, expected (*, {outputs}):"
                " one column per digit"
            )
        if b.shape != (w.shape[1],):
            raise WeightsError(
                f"{source}: b{i} has shape {_shape(b)}, expected ({w.shape[1]},)"
                f" to match W{i} {_shape(w)}"
            )
        for k, a in ((f"W{i}", w), (f"b{i}", b)):
            _check_finite(a, f"{source}: {k}", dt)
        _check_range(w, b, f"{source}: W{i} and b{i}", dt)
        prev = w
    return n


def _check_range(w: np.ndarray, b: np.ndarray, name: str, dtype: np.dtype) -> None:
    """Raise WeightsError if a unit's input can overflow `dtype`.

    Every layer's inputs lie in [0, 1] (pixels, then sigmoids), so no unit's weighted sum,
    in whatever order it is added up, exceeds the sum of |w| over its column plus |b|.
    """
    with np.errstate(over="ignore"):
        top = float((np.abs(w).sum(axis=0, dtype=np.float64) + np.abs(b)).max())
    limit = float(np.finfo(dtype).max)
    if not top <= limit:
        raise WeightsError(
            f"{name} can make a unit's input as large as {top:.3g} (the sum of |weights|"
            f" plus |bias|), expected at most {limit:.3g} so that {dtype} does not overflow"
        )


# --- loading ---------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"cannot read weights {path}: no such file") from None
    except IsADirectoryError:
        raise WeightsError(f"cannot read weights {path}: is a directory, expected a file") from None
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None
    if not data:
        raise WeightsError(f"cannot load weights {path}: the file is empty")
    return data


def _plain(obj: object) -> object:
    """obj, or a plain np.ndarray view of it if it is an _Array."""
    return obj.view(np.ndarray) if isinstance(obj, _Array) else obj


def _from_pickle(data: bytes, path: Path) -> object:
    try:
        obj = _SafeUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise UnsafePickleError(f"refusing to load {path}: {e}") from None
    except Exception:  # any failure while decoding untrusted bytes means a bad file
        what = "truncated or corrupt pickle" if data[:1] == b"\x80" else "not a pickle or .npz file"
        raise WeightsError(f"cannot load weights {path}: {what}") from None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return _plain(obj)


def _from_npz(data: bytes, path: Path) -> dict[str, Any]:
    """The arrays of an .npz; keys that cannot be weights map to None, unread."""
    import re

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keep = [k for k in z.files if re.fullmatch(r"[Wb][1-9][0-9]*", k)]
            size = sum(z.zip.getinfo(f"{k}.npy").file_size for k in keep)
            if size > MAX_NPZ_BYTES:  # a few MB of zeros can inflate to gigabytes
                raise WeightsError(
                    f"cannot load weights {path}: its arrays take {size / 2**20:,.1f} MiB"
                    f" uncompressed, expected at most {MAX_NPZ_BYTES / 2**20:,.1f} MiB"
                )
            return {k: z[k] if k in keep else None for k in z.files}
    except WeightsError:
        raise
    except Exception as e:  # zipfile, npy header and object-array errors alike
        what = (
            "the .npz holds object arrays (refused: loading them could run code)"
            if "allow_pickle" in str(e)
            else "corrupt .npz archive"
        )
        raise WeightsError(f"cannot load weights {path}: {what}") from None


def file_format(data: bytes) -> str:
    """'npz' for a zip archive, else 'pickle'."""
    return "npz" if data.startswith(ZIP_MAGIC) else "pickle"


def _sha256(data: bytes) -> Any:
    """hashlib.sha256(data), but without loading OpenSSL (3 ms) when Python has its own."""
    try:
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def _load(path: Path) -> tuple[dict[str, np.ndarray], str, str]:
    """(arrays, SHA-256, format) of a weights file, validated."""
    data = _read_bytes(path)
    fmt = file_format(data)
    params = _from_npz(data, path) if fmt == "npz" else _from_pickle(data, path)
    check_params(params, str(path))
    assert isinstance(params, dict)
    return params, _sha256(data).hexdigest(), fmt


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """Validated arrays of a .pkl or .npz weights file and the SHA-256 of its bytes."""
    params, sha, _ = _load(Path(path))
    return params, sha


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Validated arrays W1..Wn, b1..bn of a .pkl or .npz weights file; never runs code."""
    return read_weights(path)[0]


# --- saving ----------------------------------------------------------------------


def metadata_path(path: str | os.PathLike[str]) -> Path:
    """Where the metadata of a weights file lives: `<path>.json`."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def save_weights(
    params: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write float32 arrays as a textbook pickle (.pkl) or .npz, metadata to `<path>.json`."""
    import json

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (*PICKLE_SUFFIXES, ".npz"):
        raise UsageError(
            f"cannot save weights as {p}: unknown suffix {p.suffix!r} (use .pkl or .npz)"
        )
    n = check_params(params, f"weights for {p}")  # also checks they fit float32
    arrays: dict[str, Any] = {
        k: np.ascontiguousarray(params[k], dtype=np.float32)
        for i in range(1, n + 1)
        for k in (f"W{i}", f"b{i}")
    }
    meta = None if metadata is None else json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n"
    if suffix == ".npz":
        atomic_write(p, lambda f: np.savez(f, **arrays))
    else:
        atomic_write(p, lambda f: pickle.dump(arrays, f))
    side = metadata_path(p)
    if meta is None:
        side.unlink(missing_ok=True)  # a stale sidecar would describe other weights
    else:
        atomic_write(side, lambda f: f.write(meta.encode()))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata saved beside a weights file, or None if there is none."""
    import json

    side = metadata_path(path)
    try:
        text = side.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise WeightsError(f"cannot read metadata {side}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise WeightsError(f"cannot read metadata {side}: not UTF-8 text") from None
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise WeightsError(f"cannot read metadata {side}: invalid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise WeightsError(
            f"cannot read metadata {side}: expected a JSON object, found {type(meta).__name__}"
        )
    return meta


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    p = Path(path)
    try:
        with open(p, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise WeightsError(f"cannot read {p}: {e.strerror or e}") from None


def default_weights_path(check: bool = True) -> Path:
    """The default weights that ship inside the package (must exist if check)."""
    from importlib.resources import files

    p = Path(str(files("mnist_infer._shipped").joinpath(DEFAULT_NAME)))
    if check and not p.is_file():
        raise WeightsError(
            f"no default weights: {p} is missing from the installed package; reinstall"
            " mnist-infer, or pass --weights PATH"
        )
    return p


# --- description -----------------------------------------------------------------


class WeightsInfo(NamedTuple):
    """What `mnist-infer info` shows about a weights file."""

    path: Path
    format: str
    sizes: list[int]
    dtypes: list[str]
    parameters: int
    sha256: str
    metadata: dict[str, Any] | None
    metadata_error: str | None = None  # why an existing sidecar could not be read


def describe(path: str | os.PathLike[str]) -> WeightsInfo:
    """Load and validate a weights file and summarise it; a bad sidecar is not an error."""
    p = Path(path)
    params, sha, fmt = _load(p)
    try:
        meta, problem = read_metadata(p), None
    except WeightsError as e:  # the weights themselves are fine, as evaluate would find
        meta, problem = None, str(e)
    recorded = meta.get("weights_sha256") if meta is not None else None
    if isinstance(recorded, str) and recorded != sha:  # e.g. the file was replaced, not its sidecar
        problem = (
            f"the metadata in {metadata_path(p)} describes another file (SHA-256"
            f" {recorded[:12]}…, this file's is {sha[:12]}…)"
        )
        meta = None
    n = len(params) // 2
    ws = [params[f"W{i}"] for i in range(1, n + 1)]
    return WeightsInfo(
        path=p,
        format=fmt,
        sizes=[ws[0].shape[0]] + [w.shape[1] for w in ws],
        dtypes=sorted({str(a.dtype) for a in params.values()}),
        parameters=sum(a.size for a in params.values()),
        sha256=sha,
        metadata=meta,
        metadata_error=problem,
    )
