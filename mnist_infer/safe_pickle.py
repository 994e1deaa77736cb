"""The restricted unpickler for weights pickles: numpy arrays rebuilt, never code run.

Only an allow-list of globals (checked stand-ins for what numpy's pickles name), numeric
dtypes, a bounded number of operations and a memory budget tied to the file's size.
"""

from __future__ import annotations

import pickle
import reprlib
import struct
from collections.abc import Callable
from typing import IO, Any, ClassVar, NoReturn

import numpy as np

# A dict of numpy arrays takes a few dozen operations per array; anything near this many is
# built to make the loader work or allocate, not to hold weights.
MAX_PICKLE_OPS = 100_000


class Refused(Exception):
    """Something a weights pickle may not do; the message says what."""


class _NdarrayName:
    """What a pickle gets for numpy.ndarray: numpy's pickles only pass it to _reconstruct."""

    __slots__ = ()

    def __call__(self, *args: object) -> NoReturn:
        # ndarray(shape, dtype) allocates any size of uninitialised memory from a tiny file.
        raise Refused(
            "a direct call of numpy.ndarray is not allowed (numpy's pickles only pass it to"
            " _reconstruct; a direct call makes arrays of any size without their data)"
        )


_NDARRAY = _NdarrayName()
# Numeric kinds only: b bool, i/u integers, f floats, c complex, with numpy's item sizes.
_DTYPE_DESCRIPTIONS = frozenset(
    {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "f12", "f16"}
    | {"c8", "c16", "c24", "c32"}
)


def _not_numeric(desc: object) -> Refused:
    return Refused(
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
            raise Refused("setting a dtype's state twice is not allowed")
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
            raise Refused(
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
            raise Refused(
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
        raise Refused(f"an array's shape must be a tuple of sizes, found {_show(shape)}")
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
            raise Refused(
                "it asks for more memory than its size accounts for (numpy's pickles hold"
                " each array's bytes once; at most twice the file's size plus 1 MiB is allowed)"
            )

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get((module, name))
        if obj is None:
            raise Refused(
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
                raise Refused("numpy's _reconstruct is only allowed for numpy.ndarray")
            if not isinstance(shape, tuple) or shape != (0,):
                raise Refused(
                    f"numpy's _reconstruct is only allowed with the empty shape (0,), found"
                    f" {_show(shape)} (the array's data must come from the file)"
                )
            if typecode not in (b"b", "b"):
                raise Refused(
                    "numpy's _reconstruct is only allowed with the type code b'b', found"
                    f" {_show(typecode)}"
                )
            return multiarray._reconstruct(_Array, (0,), "b")

        def scalar(dtype: object, data: object = None) -> Any:
            dt = _dtype(dtype)
            if not isinstance(data, bytes) or len(data) != dt.itemsize:
                raise Refused(f"a numpy scalar of {dt} needs {dt.itemsize} bytes of data")
            self.charge(dt.itemsize)
            return multiarray.scalar(dt, data)

        def _frombuffer(buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
            # A copy: no view of the pickle's own buffers outlives loading.
            if not isinstance(buf, bytes | bytearray):
                raise Refused(f"numpy's _frombuffer is only allowed on bytes, found {_kind(buf)}")
            dt, dims = _dtype(dtype), _shape_of(shape)
            if order not in ("C", "F"):
                raise Refused(f"an array's order must be 'C' or 'F', found {_show(order)}")
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
                raise Refused(
                    "_codecs.encode is only allowed on a str with the latin1 codec, found"
                    f" {type(obj).__name__} with {_show(encoding)}"
                )
            self.charge(len(obj))
            return obj.encode("latin1")

        def collection(kind: type) -> Callable[..., Any]:
            def make(*items: object) -> Any:
                if items and not (len(items) == 1 and type(items[0]) in (list, tuple, set)):
                    raise Refused(f"{kind.__name__}() is only allowed on a list or tuple")
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
            raise Refused(
                "an array's state must be (1, shape, dtype, is_fortran, data), found"
                f" {_show(state)}"
            )
        _, shape, dtype, fortran, data = state
        dims, dt = _shape_of(shape), _dtype(dtype)
        if fortran not in (True, False):
            raise Refused(f"an array's order flag must be a bool, found {_show(fortran)}")
        if isinstance(data, str):  # Python 2's str, read as latin1
            self.charge(len(data))
            data = data.encode("latin1")
        if not isinstance(data, bytes):
            raise Refused(f"an array's data must be bytes, found {_kind(data)}")
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
            raise Refused("setting an array's state twice is not allowed")
        else:
            raise Refused(
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
        raise Refused(
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
        raise Refused(f"{op} is only allowed on a {kind.__name__}, found {_kind(obj)}")
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
            raise Refused(
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


def _plain(obj: object) -> object:
    """obj, or a plain np.ndarray view of it if it is an _Array, a np.dtype if a _Dtype."""
    if isinstance(obj, _Array):
        return obj.view(np.ndarray)
    if isinstance(obj, _Dtype):
        return obj.rebuild()
    return obj


def unpickle(f: IO[bytes], size: int) -> object:
    """The object in a pickle of `size` bytes read from f, with plain numpy arrays.

    Raises Refused for what a weights pickle may not do; other exceptions mean a bad file.
    """
    obj = _SafeUnpickler(f, size).load()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return _plain(obj)
