"""Small grey PNG files, well-formed or subtly not, made from a random.Random.

Hypothesis drives the Random in the tests (so failures shrink); a seeded Random makes a
fuzz campaign of any length. Every file starts as an 8-bit grey image the small-PNG reader
could read, then gets extra chunks (text keyed like image properties, chunks too short,
compressed text and profiles with odd methods or too much data, unknown ones) before or
after the image data, odd image data, and now and then a damaged byte.
"""

from __future__ import annotations

import random
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY8 = b"\x08\x00\x00\x00\x00"

# Keys Pillow keeps image properties under, keys it reads orientation from, and plain ones.
KEYS = (
    "transparency",
    "exif",
    "interlace",
    "bbox",
    "default_image",
    "disposal",
    "blend",
    "loop",
    "duration",
    "icc_profile",
    "gamma",
    "dpi",
    "aspect",
    "xmp",
    "Raw profile type exif",
    "XML:com.adobe.xmp",
    "Comment",
    "Software",
    "",
)
VALUES = (
    b"",
    b"1",
    b"x",
    b"\x00",
    b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00",
    b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>',
    b"\nexif\n      8\n4d4d002a00000008\n",
    b"caf\xc3\xa9 \xff",
)
# Chunk kinds with the length Pillow needs (0: any), and some it does not know.
KINDS = {
    b"tEXt": 0,
    b"zTXt": 0,
    b"iTXt": 0,
    b"pHYs": 9,
    b"gAMA": 4,
    b"cHRM": 32,
    b"sRGB": 1,
    b"iCCP": 0,
    b"tIME": 7,
    b"sBIT": 1,
    b"tRNS": 2,
    b"eXIf": 0,
    b"bKGD": 2,
    b"PLTE": 3,
    b"acTL": 8,
    b"zzZz": 0,
    b"IHDR": 13,
}


def chunk(kind: bytes, body: bytes, crc_ok: bool = True) -> bytes:
    crc = zlib.crc32(kind + body) ^ (0 if crc_ok else 1)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _text(r: random.Random, kind: bytes) -> bytes:
    key = r.choice(KEYS).encode("latin-1")
    value = r.choice(VALUES)
    if r.random() < 0.3:
        value = r.randbytes(r.randrange(0, 40))
    if kind == b"tEXt":
        return key + (b"\0" + value if r.random() < 0.9 else b"")
    method = bytes([0 if r.random() < 0.8 else r.randrange(256)])
    packed = zlib.compress(value)
    if r.random() < 0.1:  # more than Pillow inflates for one text chunk
        packed = zlib.compress(bytes(r.choice((2**20, 2**20 + 1, 3 * 2**20))), 9)
    elif r.random() < 0.1:
        packed = r.randbytes(r.randrange(0, 20))  # not deflate data
    if kind == b"zTXt":
        return key + b"\0" + method + packed
    flag = bytes([r.choice((0, 0, 1))])
    body = value if flag == b"\0" else packed
    return key + b"\0" + flag + method + b"en\0" + key + b"\0" + body


def _body(r: random.Random, kind: bytes) -> bytes:
    if kind in (b"tEXt", b"zTXt", b"iTXt"):
        return _text(r, kind)
    if kind == b"iCCP":
        name = r.choice((b"icc", b"", b"x" * 80))
        sep = b"\0" if r.random() < 0.9 else b""
        method = bytes([0 if r.random() < 0.7 else r.randrange(256)])
        profile = zlib.compress(r.randbytes(r.randrange(0, 60)))
        if r.random() < 0.2:
            profile = r.choice((b"", r.randbytes(8), zlib.compress(bytes(2**20 + 1))))
        return (name + sep + method + profile)[: r.choice((0, 1, 2, 10**6, 10**6))]
    need = KINDS[kind]
    n = need if r.random() < 0.6 else r.randrange(0, need + 3)
    return r.randbytes(n)


def _rows(r: random.Random, w: int, h: int) -> bytes:
    out = bytearray()
    for _ in range(h):
        kind = r.choices((0, 1, 2, 3, 4, 5), (40, 25, 25, 4, 4, 1))[0]
        out += bytes([kind]) + r.randbytes(w)
    return bytes(out)


def random_png(r: random.Random) -> bytes:
    """One file: a small grey picture with whatever r decides around it."""
    w = r.choice((28, 28, r.randrange(1, 70)))
    h = r.choice((28, 28, r.randrange(1, 70)))
    rows = _rows(r, w, h)
    cut = r.random()
    if cut < 0.05:
        rows = rows[: r.randrange(0, len(rows) + 1)]
    elif cut < 0.1:
        rows += r.randbytes(r.randrange(1, 4))
    z = zlib.compress(rows, r.choice((0, 6, 9)))
    if r.random() < 0.05:
        z += r.randbytes(r.randrange(1, 5))  # bytes after the deflate stream
    elif r.random() < 0.05:
        z = z[:-4]  # no Adler-32 checksum
    header = GREY8
    if r.random() < 0.05:
        i = r.randrange(len(GREY8))
        header = GREY8[:i] + bytes([r.randrange(256)]) + GREY8[i + 1 :]
    before, after = [], []
    for _ in range(r.choice((0, 1, 1, 2, 3))):
        kind = r.choice(list(KINDS))
        c = chunk(kind, _body(r, kind), crc_ok=r.random() < 0.95)
        (before if r.random() < 0.6 else after).append(c)
    parts = r.choice((1, 1, 2, 3))
    step = -(-len(z) // parts) or 1
    idat = b"".join(chunk(b"IDAT", z[i : i + step]) for i in range(0, len(z), step))
    ihdr = chunk(b"IHDR", struct.pack(">II", w, h) + header)
    data = bytearray(SIGNATURE + ihdr + b"".join(before) + idat + b"".join(after))
    data += chunk(b"IEND", b"")
    if r.random() < 0.05:  # one damaged byte anywhere
        data[r.randrange(len(data))] = r.randrange(256)
    if r.random() < 0.03:
        data = data[: r.randrange(len(data))]
    return bytes(data)
