"""Weights files: the textbook's pickled dict (loaded without running code) or .npz."""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import reprlib
import stat
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, ClassVar, NoReturn

import numpy as np

from mnist_infer.errors import UnsafePickleError, UsageError, WeightsError

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

INPUTS = 784
OUTPUTS = 10
DEFAULT_NAME = "mnist-mlp-784-800-300-10.pkl"
SMALL_NAME = "mnist-mlp-784-50-100-10.pkl"  # the book's shape
SHIPPED = {"default": DEFAULT_NAME, "small": SMALL_NAME}  # short names for --weights
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_SUFFIXES = (".pkl", ".pickle")
# Far above any MLP of this kind (784-50-100-10 takes 180 KB), far below what hurts a machine.
MAX_WEIGHTS_BYTES = 256 * 2**20
MAX_NPZ_BYTES = MAX_WEIGHTS_BYTES  # the arrays of an .npz, uncompressed
MAX_NPZ_ENTRIES = 10_000
MAX_METADATA_BYTES = 2**20  # the JSON beside a weights file


# --- safe unpickling -----------------------------------------------------------

# A dict of numpy arrays takes a few dozen operations per array; anything near this many is
# built to make the loader work or allocate, not to hold weights.
MAX_PICKLE_OPS = 100_000


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
# Numeric kinds only: b bool, i/u integers, f floats, c complex, with numpy's item sizes.
_DTYPE_DESCRIPTIONS = frozenset(
    {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "f12", "f16"}
    | {"c8", "c16", "c24", "c32"}
)


def _not_numeric(desc: object) -> _Refused:
    return _Refused(
        f"dtype {_show(desc)} is not allowed (a weights pickle may only hold arrays of"
        " bool, integer, float or complex numbers)"
    )


class _Dtype:
    """A pickled numpy.dtype, kept as its plain description until an array needs it.

    numpy's dtype.__setstate__ accepts any internal flags: forged ones make numpy read
    pointers from the file's bytes or crash. So no pickled state ever reaches numpy: the
    state may only say what numpy writes for a plain numeric dtype, and `rebuild` makes a
    fresh dtype from the allow-listed description and byte order.
    """

    __slots__ = ("built", "byteorder", "desc")

    def __init__(self, desc: str) -> None:
        self.desc, self.byteorder, self.built = desc, "=", False

    def setstate(self, state: object) -> None:
        if self.built:
            raise _Refused("setting a dtype's state twice is not allowed")
        self.built = True
        # What numpy writes for a plain numeric dtype: version 3, byte order, no sub-array,
        # no fields, no item size or alignment of its own, no flags.
        if not (
            isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
            and state[5:] == (-1, -1, 0)
        ):
            raise _Refused(
                f"the state of dtype {self.desc!r} is not that of a plain numeric dtype"
                f" (expected (3, byte order, None, None, None, -1, -1, 0), found"
                f" {_show(state)})"
            )
        self.byteorder = state[1]

    def rebuild(self) -> np.dtype:
        dt = np.dtype(self.desc)
        if self.byteorder in "<>":
            return dt.newbyteorder("<" if self.byteorder == "<" else ">")
        return dt


class _DtypeName:
    """What a pickle gets for numpy.dtype: a call makes a _Dtype of an allow-listed kind."""

    __slots__ = ()

    def __call__(self, desc: object, align: object = False, copy: object = True) -> _Dtype:
        if not (isinstance(desc, str) and desc in _DTYPE_DESCRIPTIONS):
            raise _not_numeric(desc)
        try:
            np.dtype(desc)
        except TypeError:  # e.g. f12 where long double takes 16 bytes
            raise _not_numeric(desc) from None
        if align not in (False, 0) or copy not in (True, False, 0, 1):
            raise _Refused(
                "numpy.dtype is only allowed with align=False and copy a bool, found"
                f" {_show(align)} and {_show(copy)}"
            )
        return _Dtype(desc)


_DTYPE = _DtypeName()


def _dtype(obj: object) -> np.dtype:
    """The fresh numpy dtype that a pickled dtype stands for."""
    if not isinstance(obj, _Dtype):
        raise _not_numeric(obj)
    return obj.rebuild()


class _Array(np.ndarray):
    """What _reconstruct makes: BUILD may set its state once; _plain hands out a plain view."""

    built = False


def _shape_of(shape: object) -> tuple[int, ...]:
    if not (
        isinstance(shape, tuple)
        and len(shape) <= 32
        and all(type(n) is int and n >= 0 for n in shape)
    ):
        raise _Refused(f"an array's shape must be a tuple of sizes, found {_show(shape)}")
    return shape


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    n = dtype.itemsize
    for d in shape:
        n *= d
    return n


class _SafeUnpickler(pickle._Unpickler):  # the Python one: each operation can be checked
    """An unpickler that never runs code and allocates within a budget.

    Globals resolve only to an allow-list of checked stand-ins for what numpy's pickles
    name; BUILD applies only to the arrays and dtypes those make; APPEND(S), SETITEM(S)
    and ADDITEMS only to lists, dicts and sets; at most MAX_PICKLE_OPS operations; and
    everything the stand-ins allocate (bytes, encoded strings, scalars, arrays, sets)
    counts against a budget of twice the file's `size` plus 1 MiB.
    """

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = {}
    stack: list[Any]  # these are the Python unpickler's own
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]
    read: Callable[[int], bytes]
    readinto: Callable[[bytearray], int]

    def __init__(self, file: IO[bytes], size: int) -> None:
        # latin1 turns Python 2 array data back into bytes the way numpy expects.
        super().__init__(file, encoding="latin1")
        self.size, self.budget, self.ops = size, 2 * size + 2**20, 0
        self.allowed = self._allowed_globals()

    def charge(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise _Refused(
                "it asks for more memory than its size accounts for (numpy's pickles hold"
                " each array's bytes once; at most twice the file's size plus 1 MiB is allowed)"
            )

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get((module, name))
        if obj is None:
            raise _Refused(
                f"global {_short(module)}.{_short(name)} is not allowed"
                " (a weights pickle may only rebuild numpy arrays; this one could run code)"
            )
        return obj

    def _allowed_globals(self) -> dict[tuple[str, str], Any]:
        """The only globals a weights pickle may name: what numpy needs to rebuild arrays."""
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy < 2
            from numpy.core import multiarray  # type: ignore[no-redef]

        def _reconstruct(cls: object, shape: object, typecode: object) -> Any:
            # numpy's pickles make an empty array here; BUILD then sets shape, dtype and data.
            if cls is not _NDARRAY:
                raise _Refused("numpy's _reconstruct is only allowed for numpy.ndarray")
            if not isinstance(shape, tuple) or shape != (0,):
                raise _Refused(
                    f"numpy's _reconstruct is only allowed with the empty shape (0,), found"
                    f" {_show(shape)} (the array's data must come from the file)"
                )
            if typecode not in (b"b", "b"):
                raise _Refused(
                    "numpy's _reconstruct is only allowed with the type code b'b', found"
                    f" {_show(typecode)}"
                )
            return multiarray._reconstruct(_Array, (0,), "b")

        def scalar(dtype: object, data: object = None) -> Any:
            dt = _dtype(dtype)
            if not isinstance(data, bytes) or len(data) != dt.itemsize:
                raise _Refused(f"a numpy scalar of {dt} needs {dt.itemsize} bytes of data")
            self.charge(dt.itemsize)
            return multiarray.scalar(dt, data)

        def _frombuffer(buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
            # A copy: no view of the pickle's own buffers outlives loading.
            if not isinstance(buf, bytes | bytearray):
                raise _Refused(f"numpy's _frombuffer is only allowed on bytes, found {_kind(buf)}")
            dt, dims = _dtype(dtype), _shape_of(shape)
            if order not in ("C", "F"):
                raise _Refused(f"an array's order must be 'C' or 'F', found {_show(order)}")
            n = _nbytes(dims, dt)
            if len(buf) != n:
                raise ValueError("the data does not fill the array")
            self.charge(n)
            if n == 0:
                return np.empty(dims, dt, order=order)
            flat = np.frombuffer(buf, dt)
            return flat.reshape(dims, order=order).copy(order="K")

        def encode(obj: object, encoding: object = "utf-8") -> bytes:
            # Protocols 0-2 store bytes as encode(str, "latin1"); other codecs (hex, zlib, ...)
            # could grow a tiny file into gigabytes.
            if not isinstance(obj, str) or encoding != "latin1":
                raise _Refused(
                    "_codecs.encode is only allowed on a str with the latin1 codec, found"
                    f" {type(obj).__name__} with {_show(encoding)}"
                )
            self.charge(len(obj))
            return obj.encode("latin1")

        def collection(kind: type) -> Callable[..., Any]:
            def make(*items: object) -> Any:
                if items and not (len(items) == 1 and type(items[0]) in (list, tuple, set)):
                    raise _Refused(f"{kind.__name__}() is only allowed on a list or tuple")
                self.charge(64 * len(items[0]) if items else 64)  # type: ignore[arg-type]
                return kind(_flat(x) for x in items[0]) if items else kind()  # type: ignore[attr-defined]

            return make

        allowed: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _DTYPE,
            ("_codecs", "encode"): encode,
        }
        # Pickles name numpy's private module as it was called when they were written.
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
            allowed[(f"{core}.multiarray", "scalar")] = scalar
            # Protocol 5 rebuilds contiguous arrays with _frombuffer.
            allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
        for mod in ("builtins", "__builtin__"):
            allowed[(mod, "set")] = collection(set)
            allowed[(mod, "frozenset")] = collection(frozenset)
        return allowed

    def build_array(self, array: _Array, state: object) -> None:
        """Set an empty array's shape, dtype and data from numpy's pickled state."""
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _Refused(
                "an array's state must be (1, shape, dtype, is_fortran, data), found"
                f" {_show(state)}"
            )
        _, shape, dtype, fortran, data = state
        dims, dt = _shape_of(shape), _dtype(dtype)
        if fortran not in (True, False):
            raise _Refused(f"an array's order flag must be a bool, found {_show(fortran)}")
        if isinstance(data, str):  # Python 2's str, read as latin1
            self.charge(len(data))
            data = data.encode("latin1")
        if not isinstance(data, bytes):
            raise _Refused(f"an array's data must be bytes, found {_kind(data)}")
        n = _nbytes(dims, dt)
        if len(data) != n:
            raise ValueError("the data does not fill the array")
        self.charge(n)
        array.built = True
        np.ndarray.__setstate__(array, (1, dims, dt, bool(fortran), data))  # type: ignore[arg-type]

    # -- operations that act on objects the pickle made ---------------------------

    def load_build(self) -> None:
        state = self.stack.pop()
        obj = self.stack[-1]
        if isinstance(obj, _Dtype):
            obj.setstate(state)
        elif isinstance(obj, _Array) and not obj.built:
            self.build_array(obj, state)
        elif isinstance(obj, _Array):
            # A second BUILD would free the data that views already handed out point at.
            raise _Refused("setting an array's state twice is not allowed")
        else:
            raise _Refused(
                "BUILD is only allowed on the arrays and dtypes numpy's pickles make, found"
                f" {_kind(obj)}"
            )

    def load_append(self) -> None:
        value = self.stack.pop()
        _only(self.stack[-1], list, "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        _only(self.stack[-1], list, "APPENDS").extend(items)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = _flat(self.stack.pop())
        _only(self.stack[-1], dict, "SETITEM")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        d = _only(self.stack[-1], dict, "SETITEMS")
        for i in range(0, len(items), 2):
            d[_flat(items[i])] = items[i + 1]

    def load_dict(self) -> None:
        items = self.pop_mark()
        self.append({_flat(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def load_additems(self) -> None:
        items = [_flat(x) for x in self.pop_mark()]
        _only(self.stack[-1], set, "ADDITEMS").update(items)

    def load_frozenset(self) -> None:
        self.append(frozenset(_flat(x) for x in self.pop_mark()))

    def load_bytearray8(self) -> None:
        # The Python unpickler makes the whole bytearray before it reads: check the length.
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self.size:
            raise ValueError("a bytearray longer than the file")
        self.charge(n)
        b = bytearray(n)
        if self.readinto(b) != n or len(b) != n:  # the Python unpickler may shrink it instead
            raise ValueError("a bytearray cut short")
        self.append(b)


# What dict keys and set items may be. Hashing a tuple walks all of it, every time: a few
# hundred bytes of tuples that share their parts can take longer than the universe's age.
_FLAT = (str, bytes, int, float, bool, type(None))


def _flat(key: object) -> object:
    if type(key) not in _FLAT:
        raise _Refused(
            "dict keys and set items must be strings, bytes or numbers (a weights pickle maps"
            f" names to arrays), found {_kind(key)}"
        )
    return key


def _show(obj: object) -> str:
    """A short repr of anything a pickle made, even an int too long to print."""
    try:
        return reprlib.repr(obj)
    except ValueError:  # int too long to convert to text, perhaps inside a container
        return f"<{_kind(obj)} too long to show>"


def _short(text: str, most: int = 100) -> str:
    """`text`, cut at `most` characters, control characters escaped: one short line."""
    text = text if len(text) <= most else text[:most] + "…"
    return text if text.isprintable() else repr(text)[1:-1]


def _only(obj: Any, kind: type, op: str) -> Any:
    if type(obj) is not kind:
        raise _Refused(f"{op} is only allowed on a {kind.__name__}, found {_kind(obj)}")
    return obj


def _kind(obj: object) -> str:
    """The type's name, as the pickle named it."""
    return (
        "ndarray"
        if isinstance(obj, _Array)
        else "dtype"
        if isinstance(obj, _Dtype)
        else type(obj).__name__
    )


def _counted(op: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(self: _SafeUnpickler) -> None:
        self.ops += 1
        if self.ops > MAX_PICKLE_OPS:
            raise _Refused(
                f"it takes over {MAX_PICKLE_OPS:,} pickle operations (a dict of numpy arrays"
                " takes a few dozen per array)"
            )
        op(self)

    return run


_OVERRIDES = {
    pickle.BUILD: _SafeUnpickler.load_build,
    pickle.APPEND: _SafeUnpickler.load_append,
    pickle.APPENDS: _SafeUnpickler.load_appends,
    pickle.SETITEM: _SafeUnpickler.load_setitem,
    pickle.SETITEMS: _SafeUnpickler.load_setitems,
    pickle.ADDITEMS: _SafeUnpickler.load_additems,
    pickle.DICT: _SafeUnpickler.load_dict,
    pickle.FROZENSET: _SafeUnpickler.load_frozenset,
    pickle.BYTEARRAY8: _SafeUnpickler.load_bytearray8,
}
_SafeUnpickler.dispatch = {
    code: _counted(_OVERRIDES.get(bytes([code]), op))
    for code, op in pickle._Unpickler.dispatch.items()
}


# --- validation ------------------------------------------------------------------


def _shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))


def _ends(a: np.ndarray, dtype: np.dtype | None = None) -> tuple[float, float]:
    """a's maximum and minimum as floats (once converted to dtype, if given)."""
    if dtype is not None:
        with np.errstate(over="ignore"):  # too large for dtype: inf, which is the answer
            a = a.astype(dtype)
    return float(a.max()), float(a.min())


def _check_finite(a: np.ndarray, name: str, dtype: np.dtype) -> tuple[float, float]:
    """a's maximum and minimum; WeightsError unless a is finite, also in the network's dtype."""
    # The usual case, fast: NaN spreads to the maximum, and an inf is the maximum or minimum.
    if a.size:
        ends = _ends(a)
        if all(map(math.isfinite, ends)) and (
            a.dtype == dtype or all(map(math.isfinite, _ends(a, dtype)))
        ):
            return ends
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
    return _ends(a) if a.size else (0.0, 0.0)


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
        found = _some(sorted(_show(k) for k in params)) or "none"
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
            raise WeightsError(f"{source}: unexpected key {_show(k)} (expected only {want})")
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
        w_ends = _check_finite(w, f"{source}: W{i}", dt)
        b_ends = _check_finite(b, f"{source}: b{i}", dt)
        _check_range(w, b, f"{source}: W{i} and b{i}", dt, w_ends, b_ends)
        prev = w
    return n


def _some(items: Iterable[str], most: int = 10) -> str:
    """The first `most` items joined by commas, then how many more there are."""
    items = list(items)
    more = f", …and {len(items) - most:,} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _check_range(
    w: np.ndarray,
    b: np.ndarray,
    name: str,
    dtype: np.dtype,
    w_ends: tuple[float, float],
    b_ends: tuple[float, float],
) -> None:
    """Raise WeightsError if a unit's input can overflow `dtype` (ends: (max, min) of w, b).

    Every layer's inputs lie in [0, 1] (pixels, then sigmoids), so no unit's weighted sum,
    in whatever order it is added up, exceeds the sum of |w| over its column plus |b|.
    """
    limit = float(np.finfo(dtype).max)
    # Each column's sum is at most rows times the largest |w|: far below the limit, it passes.
    most = max(map(abs, w_ends)) * w.shape[0] + max(map(abs, b_ends))
    if 2 * most <= limit:
        return
    with np.errstate(over="ignore"):
        top = float((np.abs(w).sum(axis=0, dtype=np.float64) + np.abs(b)).max())
    if not top <= limit:
        raise WeightsError(
            f"{name} can make a unit's input as large as {top:.3g} (the sum of |weights|"
            f" plus |bias|), expected at most {limit:.3g} so that {dtype} does not overflow"
        )


# --- loading ---------------------------------------------------------------------


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


class _NotRegular(Exception):
    """The path is no regular file; the message says what it is."""


class _TooLarge(Exception):
    """The file holds more than the limit; the message says how much."""


def _check_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise _NotRegular(next((k for test, k in _KINDS if test(mode)), "not a regular file"))


def _open_regular(path: Path, limit: int) -> tuple[BinaryIO, int]:
    """A regular file of at most `limit` bytes, opened, and its size.

    Devices, FIFOs and sockets are refused before they are opened (opening a FIFO waits for a
    writer; /dev/zero never ends). The file is opened without blocking and checked again, in
    case it was replaced in between.
    """
    st = os.stat(path)
    _check_regular(st.st_mode)
    if st.st_size > limit:
        raise _TooLarge(f"{st.st_size:,}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    f = open(fd, "rb")  # noqa: SIM115  # the caller closes it
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode)
        if st.st_size > limit:
            raise _TooLarge(f"{st.st_size:,}")
    except BaseException:
        f.close()
        raise
    return f, st.st_size


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (see _open_regular); nothing
    past the limit is read."""
    f, size = _open_regular(path, limit)
    with f:
        data = f.read(size + 1)
        if len(data) <= size:
            return data
        # It grew since, or its size says nothing (as in /proc): read on, up to the limit.
        parts = [data]
        while (n := sum(map(len, parts))) <= limit and (
            more := f.read(min(1 << 20, limit + 1 - n))
        ):
            parts.append(more)
        if n > limit:
            raise _TooLarge(f"over {limit:,}")
        return b"".join(parts)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn the errors of reading a weights file into WeightsError."""
    try:
        yield
    except FileNotFoundError:
        raise WeightsError(f"cannot read weights {path}: no such file") from None
    except _NotRegular as e:
        raise WeightsError(f"cannot read weights {path}: is {e}, expected a regular file") from None
    except _TooLarge as e:
        raise WeightsError(
            f"cannot load weights {path}: the file is {e} bytes, expected at most"
            f" {MAX_WEIGHTS_BYTES:,} ({MAX_WEIGHTS_BYTES // 2**20} MiB)"
        ) from None
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None


def _read_bytes(path: Path) -> bytes:
    """The bytes of a weights file (see _read_regular), or WeightsError."""
    with _reading(path):
        data = _read_regular(path, MAX_WEIGHTS_BYTES)
    if not data:
        raise WeightsError(f"cannot load weights {path}: the file is empty")
    return data


def _load_streamed(path: Path) -> tuple[object] | None:
    """(the object in a pickle weights file,), unpickled straight from the file: one copy
    of the arrays' bytes instead of two (3 ms of a one-file predict with the default weights).

    None when the file is no pickle (an .npz) or its size is unknown (as in /proc): the
    caller then reads it whole.
    """
    with _reading(path):
        f, size = _open_regular(path, MAX_WEIGHTS_BYTES)
        with f:
            head = f.read(len(ZIP_MAGIC))
            if not size or len(head) < len(ZIP_MAGIC) or file_format(head) != "pickle":
                return None
            f.seek(0)
            return (_unpickled(f, size, head, path),)


def _plain(obj: object) -> object:
    """obj, or a plain np.ndarray view of it if it is an _Array, a np.dtype if a _Dtype."""
    if isinstance(obj, _Array):
        return obj.view(np.ndarray)
    if isinstance(obj, _Dtype):
        return obj.rebuild()
    return obj


def _from_pickle(data: bytes, path: Path) -> object:
    return _unpickled(io.BytesIO(data), len(data), data, path)


def _unpickled(f: IO[bytes], size: int, head: bytes, path: Path) -> object:
    """The object in a pickle of `size` bytes read from f (which starts with head)."""
    try:
        obj = _SafeUnpickler(f, size).load()
    except _Refused as e:
        raise UnsafePickleError(f"refusing to load {path}: {e}") from None
    except MemoryError:
        raise WeightsError(f"cannot load weights {path}: not enough memory") from None
    except OSError:
        raise  # the file, not its content: _reading says why
    except Exception:  # any failure while decoding untrusted bytes means a bad file
        what = "truncated or corrupt pickle" if head[:1] == b"\x80" else "not a pickle or .npz file"
        raise WeightsError(f"cannot load weights {path}: {what}") from None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return _plain(obj)


def _from_npz(data: bytes, path: Path) -> dict[str, Any]:
    """The arrays of an .npz; keys that cannot be weights map to None, unread."""

    # The central directory is read whole: a million tiny entries take gigabytes.
    if (entries := data.count(b"PK\x01\x02")) > MAX_NPZ_ENTRIES:
        raise WeightsError(
            f"cannot load weights {path}: the .npz holds {entries:,} entries, expected at most"
            f" {MAX_NPZ_ENTRIES:,} (one per array)"
        )
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


def _load(path: Path, digest: bool = True) -> tuple[dict[str, np.ndarray], str, str]:
    """(arrays, SHA-256 or "" unless digest, format) of a weights file, validated."""
    streamed = None if digest else _load_streamed(path)
    if streamed is not None:
        params: object = streamed[0]
        fmt = "pickle"
    else:
        data = _read_bytes(path)
        fmt = file_format(data)
        params = _from_npz(data, path) if fmt == "npz" else _from_pickle(data, path)
    check_params(params, str(path))
    assert isinstance(params, dict)
    return params, _sha256(data).hexdigest() if digest else "", fmt


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], str]:
    """Validated arrays of a .pkl or .npz weights file and the SHA-256 of its bytes."""
    params, sha, _ = _load(Path(path))
    return params, sha


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Validated arrays W1..Wn, b1..bn of a .pkl or .npz weights file; never runs code."""
    return _load(Path(path), digest=False)[0]  # hashing megabytes is a predict's startup


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
    from mnist_infer.files import atomic_write

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
        text = _read_regular(side, MAX_METADATA_BYTES).decode("utf-8")
    except FileNotFoundError:
        return None
    except _NotRegular as e:
        raise WeightsError(
            f"cannot read metadata {side}: is {e}, expected a regular file"
        ) from None
    except _TooLarge as e:
        raise WeightsError(
            f"cannot read metadata {side}: the file is {e} bytes, expected at most"
            f" {MAX_METADATA_BYTES:,}"
        ) from None
    except OSError as e:
        raise WeightsError(f"cannot read metadata {side}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise WeightsError(f"cannot read metadata {side}: not UTF-8 text") from None
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise WeightsError(f"cannot read metadata {side}: invalid JSON ({e})") from None
    except RecursionError:
        raise WeightsError(f"cannot read metadata {side}: JSON nested too deep") from None
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


def default_weights_path(check: bool = True, name: str = DEFAULT_NAME) -> Path:
    """The default (or the named) weights that ship inside the package (must exist if check)."""
    p = _shipped_folder() / name
    if check and not p.is_file():
        raise WeightsError(
            f"no default weights: {p} is missing from the installed package; reinstall"
            " mnist-infer, or pass --weights PATH"
        )
    return p


def _shipped_folder() -> Path:
    """Where the package mnist_infer._shipped is: its folder on disk when it has one (the
    same answer as importlib.resources, without that module's ~10 ms of imports)."""
    import importlib

    package = importlib.import_module("mnist_infer._shipped")
    for folder in getattr(package, "__path__", []):
        if os.path.isdir(folder):
            return Path(folder)
    from importlib.resources import files

    return Path(str(files("mnist_infer._shipped")))


def weights_path(value: str | os.PathLike[str] | None) -> Path:
    """What --weights names: a file, or a short name of shipped weights (default, small)
    when no file of that name exists; None is the default weights."""
    if value is None:
        return default_weights_path()
    p = Path(value)
    if str(value) in SHIPPED and not p.exists():
        return default_weights_path(name=SHIPPED[str(value)])
    return p


# --- description -----------------------------------------------------------------


class WeightsInfo:
    """What `mnist-infer info` shows about a weights file."""

    # A plain class: a NamedTuple's creation costs every command's start ~0.5 ms.
    __slots__ = (
        *("dtypes", "format", "metadata", "metadata_error"),
        *("parameters", "path", "sha256", "sizes"),
    )

    def __init__(
        self,
        *,
        path: Path,
        format: str,
        sizes: list[int],
        dtypes: list[str],
        parameters: int,
        sha256: str,
        metadata: dict[str, Any] | None,
        metadata_error: str | None = None,  # why an existing sidecar could not be read
    ) -> None:
        self.path, self.format, self.sizes, self.dtypes = path, format, sizes, dtypes
        self.parameters, self.sha256, self.metadata = parameters, sha256, metadata
        self.metadata_error = metadata_error


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
