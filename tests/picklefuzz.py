"""Weights pickles, real ones and damaged copies of them, made from a random.Random.

The real ones are what save_weights writes (and the same dict in every pickle protocol);
the damage is what a bad disk, a bad copy or a hostile hand does: bytes changed, cut,
repeated or inserted, and the lengths inside (FRAME, BINBYTES8, BINUNICODE…) made huge,
off by a little, or zero.
"""

from __future__ import annotations

import pickle
import pickletools
import random
import struct
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from mnist_infer.weights import save_weights

# Opcodes followed by a length: (opcode, struct format of the length).
LENGTHS = {
    pickle.FRAME: "<Q",
    pickle.BINBYTES8: "<Q",
    pickle.BINUNICODE8: "<Q",
    pickle.BYTEARRAY8: "<Q",
    pickle.BINBYTES: "<I",
    pickle.BINUNICODE: "<I",
    pickle.BINSTRING: "<i",
    pickle.LONG4: "<i",
    pickle.SHORT_BINBYTES: "<B",
    pickle.SHORT_BINUNICODE: "<B",
    pickle.SHORT_BINSTRING: "<B",
}


def _params(sizes: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(1, len(sizes)):
        out[f"W{i}"] = rng.normal(size=(sizes[i - 1], sizes[i])).astype(np.float32)
        out[f"b{i}"] = rng.normal(size=sizes[i]).astype(np.float32)
    return out


@cache
def originals() -> tuple[bytes, ...]:
    """Good weights pickles: save_weights' own files, and the same dict in every protocol."""
    found = []
    with tempfile.TemporaryDirectory() as d:
        for seed, sizes in enumerate([(784, 3, 10), (784, 2, 2, 10)]):
            p = Path(d) / f"w{seed}.pkl"
            save_weights(_params(sizes, seed), p)
            found.append(p.read_bytes())
    params = _params((784, 2, 10), 7)
    small = {k: v.astype(np.float64) if k.startswith("b") else v for k, v in params.items()}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        found.append(pickle.dumps(small, protocol=protocol))
    return tuple(found)


def _length_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, format) of each length field in a pickle's opcodes (parsed as it stands)."""
    fields = []
    try:
        for op, _, pos in pickletools.genops(data):
            fmt = LENGTHS.get(op.code.encode("latin-1"))
            if fmt is not None and pos is not None:
                fields.append((pos + 1, fmt))
    except Exception:  # a damaged pickle: the fields found before the damage
        pass
    return fields


def _new_length(r: random.Random, fmt: str, old: int) -> int:
    top = {"<Q": 2**64 - 1, "<I": 2**32 - 1, "<i": 2**31 - 1, "<B": 255}[fmt]
    lo = -(2**31) if fmt == "<i" else 0
    choice = r.choice(("huge", "top", "zero", "near", "near", "random"))
    value = {
        "huge": min(top, 2**62),
        "top": top,
        "zero": 0,
        "near": old + r.randint(-3, 3),
        "random": r.randint(lo, top),
    }[choice]
    return max(lo, min(top, value))


def mutate(r: random.Random, data: bytes) -> bytes:
    """data with one to three kinds of damage."""
    b = bytearray(data)
    for _ in range(r.randint(1, 3)):
        kind = r.choice(("length", "length", "flip", "cut", "insert", "delete", "repeat"))
        fields = _length_fields(bytes(b)) if kind == "length" else []
        if kind == "length" and fields:
            pos, fmt = r.choice(fields)
            size = struct.calcsize(fmt)
            if pos + size <= len(b):
                (old,) = struct.unpack_from(fmt, b, pos)
                struct.pack_into(fmt, b, pos, _new_length(r, fmt, old))
        elif kind == "flip" and b:
            b[r.randrange(len(b))] = r.randrange(256)
        elif kind == "cut" and b:
            del b[r.randrange(len(b)) :]
        elif kind == "insert":
            i = r.randrange(len(b) + 1)
            b[i:i] = r.randbytes(r.randint(1, 9))
        elif kind == "delete" and b:
            i = r.randrange(len(b))
            del b[i : i + r.randint(1, 9)]
        elif kind == "repeat" and b:
            i = r.randrange(len(b))
            j = min(len(b), i + r.randint(1, 64))
            b[j:j] = b[i:j]
    return bytes(b)


def random_pickle(r: random.Random) -> bytes:
    """A good pickle now and then, mostly a damaged one."""
    data = r.choice(originals())
    return data if r.random() < 0.05 else mutate(r, data)
