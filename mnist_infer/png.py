"""Small 8-bit greyscale PNG files (MNIST digits saved as files) read without Pillow.

Pillow spends most of its time on a 28x28 file in its plugin machinery, not in decoding.
This reads the plain case only: greyscale, 8 bits, not interlaced, at most MAX_SIDE pixels
a side, chunks that do not change what the pixels mean and that Pillow accepts as they are,
checksums right, and the pixel data exactly as long as the header says. For anything else
`read` returns None and the caller hands the file to Pillow, so odd and broken files fail
(or load) exactly as they always did: whatever this reads, Pillow reads the same.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 64  # px; bigger images go through Pillow (and the full preprocessing anyway)
MAX_BYTES = 1 << 16  # a file this small can hold such an image with room for its text
SLOW_PIXELS = 256  # average/Paeth-filtered pixels (decoded one by one) past which Pillow wins
# Chunks that change neither the pixels nor how Pillow presents them (no transparency, no
# orientation, no animation), with the least length Pillow accepts them with: it refuses a
# file with a shorter one. Compressed text and ICC profiles are left to Pillow (it refuses
# some of them: an unknown compression method, too much text once inflated).
HARMLESS = {b"tEXt": 0, b"tIME": 0, b"sBIT": 0, b"sRGB": 1, b"gAMA": 4, b"pHYs": 9, b"cHRM": 32}
_CHUNK = struct.Struct(">I4s")
_SIZE = struct.Struct(">II")
_GREY8 = b"\x08\x00\x00\x00\x00"  # bit depth 8, colour type 0, deflate, filter 0, no interlace


def read(data: bytes) -> NDArray[np.uint8] | None:
    """The (height, width) pixels of a small 8-bit grey PNG file's bytes, or None."""
    if not data.startswith(SIGNATURE) or len(data) > MAX_BYTES:
        return None
    parsed = _chunks(memoryview(data))
    if parsed is None:
        return None
    (w, h), idat = parsed
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        return None
    stride = w + 1  # each row starts with its filter type
    z = zlib.decompressobj()
    try:
        raw = z.decompress(idat, stride * h + 1)
    except zlib.error:
        return None
    if len(raw) != stride * h or not z.eof:
        return None
    return _unfilter(raw, h, w)


def _chunks(mv: memoryview) -> tuple[tuple[int, int], bytes] | None:
    """(width, height) and the joined image data, if every chunk is well-formed and harmless."""
    pos, last = len(SIGNATURE), b""
    size: tuple[int, int] | None = None
    idat: list[memoryview] = []
    while pos + 12 <= len(mv):
        length, kind = _CHUNK.unpack_from(mv, pos)
        end = pos + 8 + length
        if end + 4 > len(mv) or zlib.crc32(mv[pos + 4 : end]) != int.from_bytes(mv[end : end + 4]):
            return None
        if (size is None) != (kind == b"IHDR"):  # IHDR first, and once
            return None
        if kind == b"IHDR":
            if length != 13 or mv[pos + 16 : end] != _GREY8:
                return None
            w, h = _SIZE.unpack_from(mv, pos + 8)
            size = (w, h)
        elif kind == b"IDAT":
            if idat and last != b"IDAT":  # image data must be one run of chunks
                return None
            idat.append(mv[pos + 8 : end])
        elif kind == b"IEND":
            return (size, b"".join(idat)) if size is not None and idat else None
        elif HARMLESS.get(kind, length + 1) > length:  # unknown, or too short for Pillow
            return None
        pos, last = end + 4, kind
    return None  # no IEND: truncated


def _unfilter(raw: bytes, h: int, w: int) -> NDArray[np.uint8] | None:
    """Undo PNG's per-row filters (one byte per pixel); None if Pillow would be faster."""
    stride = w + 1
    kinds = raw[::stride]  # each row's filter type (plain ints: numpy calls cost more here)
    out = np.frombuffer(raw, np.uint8).reshape(h, stride)[:, 1:].copy()
    busy = [y for y, k in enumerate(kinds) if k]
    if not busy:
        return out
    if max(kinds) > 4 or sum(k >= 3 for k in kinds) * w > SLOW_PIXELS:
        return None
    zero = bytes(w)
    for y in busy:
        kind = kinds[y]
        if kind == 1:  # sub: a running sum along the row, modulo 256
            np.cumsum(out[y], dtype=np.uint8, out=out[y])
        elif kind == 2:  # up (nothing to add on the first row)
            if y:
                out[y] += out[y - 1]
        else:  # average or Paeth: each pixel needs the one decoded before it
            step = _average if kind == 3 else _paeth
            up = out[y - 1].tobytes() if y else zero
            out[y] = np.frombuffer(step(out[y].tobytes(), up), np.uint8)
    return out


def _average(row: bytes, up: bytes) -> bytearray:
    """Filter 3: add the mean of the left and upper neighbours."""
    out, left = bytearray(row), 0
    for x, b in enumerate(up):
        left = (out[x] + ((left + b) >> 1)) & 255
        out[x] = left
    return out


def _paeth(row: bytes, up: bytes) -> bytearray:
    """Filter 4: add whichever of left, upper, upper-left is nearest left + upper - upper-left."""
    out, a, c = bytearray(row), 0, 0
    for x, b in enumerate(up):
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        a = (out[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[x] = a
        c = b
    return out


TEXT = (b"tEXt", b"zTXt", b"iTXt")


def without_text(data: bytes, keys: Sequence[str]) -> bytes:
    """A PNG file's bytes without its text chunks keyed by one of `keys` (Latin-1 keywords).

    Every other byte stays as it was, damaged chunks and anything past IEND included.
    """
    drop = {k.encode("latin-1") for k in keys}
    out, pos = [data[: len(SIGNATURE)]], len(SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = _CHUNK.unpack_from(data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        if not (kind in TEXT and data[pos + 8 : end - 4].split(b"\0", 1)[0] in drop):
            out.append(data[pos:end])
        pos = end
    out.append(data[pos:])
    return b"".join(out)
