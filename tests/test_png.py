"""The small-PNG reader: the same pixels as Pillow, and None for every file it leaves to Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from mnist_infer import png
from mnist_infer.decode import small_png
from mnist_infer.image import load_digit


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(pixels: np.ndarray, kinds: list[int]) -> bytes:
    """The rows of an 8-bit grey image filtered as the PNG spec says, one kind per row."""
    out = bytearray()
    prev = [0] * pixels.shape[1]
    for row, kind in zip(pixels.tolist(), kinds, strict=True):
        left = [0, *row[:-1]]
        upleft = [0, *prev[:-1]]
        pred = {
            0: [0] * len(row),
            1: left,
            2: prev,
            3: [(a + b) // 2 for a, b in zip(left, prev, strict=True)],
            4: [_paeth(a, b, c) for a, b, c in zip(left, prev, upleft, strict=True)],
        }[kind]
        out += bytes([kind, *((x - p) % 256 for x, p in zip(row, pred, strict=True))])
        prev = row
    return bytes(out)


def encode(
    pixels: np.ndarray,
    kinds: list[int] | None = None,
    *,
    header: bytes = b"\x08\x00\x00\x00\x00",
    before: Sequence[bytes] = (),
    after: Sequence[bytes] = (),
    data: bytes | None = None,
    split: int = 0,
) -> bytes:
    """A PNG file of an 8-bit grey image, its rows filtered by `kinds`, extra chunks around."""
    h, w = pixels.shape
    kinds = kinds if kinds is not None else [k % 5 for k in range(h)]
    z = zlib.compress(_filtered(pixels, kinds) if data is None else data)
    parts = [z[i : i + split] for i in range(0, len(z), split)] if split else [z]
    ihdr = _chunk(b"IHDR", struct.pack(">II", w, h) + header)
    idat = b"".join(_chunk(b"IDAT", p) for p in parts)
    return png.SIGNATURE + ihdr + b"".join(before) + idat + b"".join(after) + _chunk(b"IEND", b"")


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def digits(h: int = 28, w: int = 28, seed: int = 0) -> np.ndarray:
    """A noisy stroke-like picture: every filter has real work to do."""
    rng = np.random.default_rng(seed)
    a = np.zeros((h, w), np.uint8)
    a[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = 255
    return a ^ rng.integers(0, 256, (h, w), np.uint8) // 4


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_each_filter_reads_as_pillow_reads_it(kind: int) -> None:
    a = digits(9, 28, seed=kind)  # 9 rows of 28: within SLOW_PIXELS for average and Paeth
    data = encode(a, [kind] * 9)
    got = png.read(data)
    assert got is not None
    np.testing.assert_array_equal(got, pillow(data))
    np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize(("h", "w"), [(28, 28), (1, 1), (8, 8), (64, 13), (5, 64)])
def test_mixed_filters_and_sizes(h: int, w: int) -> None:
    a = digits(h, w, seed=h * w)
    kinds = [(y * 7) % 5 for y in range(h)]
    kinds = [k if k < 3 or y % 9 == 0 else 1 for y, k in enumerate(kinds)]  # few slow rows
    data = encode(a, kinds, split=7)
    got = png.read(data)
    assert got is not None
    np.testing.assert_array_equal(got, pillow(data))


def test_pillow_files_read_the_same() -> None:
    a = digits()
    buf = io.BytesIO()
    Image.fromarray(a, "L").save(buf, format="PNG")
    data = buf.getvalue()
    np.testing.assert_array_equal(png.read(data), a)


def test_harmless_chunks_are_skipped() -> None:
    a = digits()
    data = encode(a, [0] * 28, before=[_chunk(b"pHYs", bytes(9))], after=[_chunk(b"tEXt", b"k\0v")])
    np.testing.assert_array_equal(png.read(data), a)


def _rgb_header() -> bytes:
    return b"\x08\x02\x00\x00\x00"


LEFT_TO_PILLOW = {
    "not a PNG": b"\xff\xd8\xff" + bytes(100),
    "16-bit grey": encode(digits(), [0] * 28, header=b"\x10\x00\x00\x00\x00"),
    "RGB": encode(digits(), [0] * 28, header=_rgb_header()),
    "interlaced": encode(digits(), [0] * 28, header=b"\x08\x00\x00\x00\x01"),
    "too wide": encode(digits(28, 65), [0] * 28),
    "zero rows": encode(np.zeros((0, 5), np.uint8), [], data=b""),
    "transparency": encode(digits(), [0] * 28, before=[_chunk(b"tRNS", b"\x00\x00")]),
    "EXIF orientation": encode(digits(), [0] * 28, after=[_chunk(b"eXIf", b"MM\0*")]),
    "animation": encode(digits(), [0] * 28, before=[_chunk(b"acTL", bytes(8))]),
    "unknown chunk": encode(digits(), [0] * 28, before=[_chunk(b"zzZz", b"")]),
    "too little data": encode(digits(), data=bytes(29 * 27)),
    "too much data": encode(digits(), data=bytes(29 * 28 + 1)),
    "bad filter type": encode(digits(), data=b"\x05" + bytes(28) + bytes(29 * 27)),
    "many slow rows": encode(digits(), [4] * 28),
    "no IEND": encode(digits(), [0] * 28)[:-12],
    "bad checksum": encode(digits(), [0] * 28)[:-1] + b"\x00",
    "chunk past the end": encode(digits(), [0] * 28)[:40],
    "IDAT in two runs": encode(digits(), [0] * 28, split=100)[:-12]
    + _chunk(b"tEXt", b"k\0v")
    + _chunk(b"IDAT", b"")
    + _chunk(b"IEND", b""),
    "larger than MAX_BYTES": encode(
        digits(), [0] * 28, before=[_chunk(b"tEXt", b"k\0" + bytes(png.MAX_BYTES))]
    ),
}


@pytest.mark.parametrize("name", sorted(LEFT_TO_PILLOW))
def test_anything_else_is_left_to_pillow(name: str) -> None:
    assert png.read(LEFT_TO_PILLOW[name]) is None


def test_corrupt_deflate_is_left_to_pillow() -> None:
    data = bytearray(encode(digits(), [0] * 28))
    start = data.index(b"IDAT") + 4
    data[start : start + 4] = b"\xff\xff\xff\xff"  # no longer a zlib stream
    body_end = len(data) - 12 - 4
    crc = zlib.crc32(bytes(data[start - 4 : body_end]))
    data[body_end : body_end + 4] = struct.pack(">I", crc)
    assert png.read(bytes(data)) is None


@pytest.mark.parametrize("raw", [False, True])
def test_load_digit_gives_the_same_digit_either_way(raw: bool) -> None:
    """A file the fast path reads, and the same pixels that only Pillow reads, agree."""
    a = digits()
    fast = encode(a, [k % 3 for k in range(28)])
    slow = encode(a, [0] * 28, before=[_chunk(b"zzZz", b"")])  # an unknown chunk: Pillow
    assert png.read(fast) is not None
    assert png.read(slow) is None
    for invert in ("auto", "yes", "no"):
        d1, n1 = load_digit(io.BytesIO(fast), "a.png", invert, raw)
        d2, n2 = load_digit(io.BytesIO(slow), "a.png", invert, raw)
        np.testing.assert_array_equal(d1, d2)
        assert n1 == n2 == []


def test_a_declined_stream_is_left_where_it_was() -> None:
    """When the fast path declines, Pillow reads the stream from where the caller left it."""
    data = encode(digits(), [0] * 28, before=[_chunk(b"tRNS", b"\x00\x00")])
    stream = io.BytesIO(data)
    stream.seek(3)
    assert small_png(stream) is None
    assert stream.tell() == 3


def _rebuilt(header: bytes, raw: bytes | None = None, z: bytes | None = None) -> bytes:
    """A file from an IHDR body and either filtered rows (compressed here) or deflate bytes."""
    z = zlib.compress(raw or b"") if z is None else z
    return png.SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", z) + _chunk(b"IEND", b"")


def _agrees_with_pillow(data: bytes) -> bool:
    """True if png.read gives None, or exactly the pixels Pillow decodes (checksums right)."""
    got = png.read(data)
    if got is None:
        return True
    return np.array_equal(got, pillow(data))


def test_garbage_rows_and_sizes_agree_with_pillow() -> None:
    """Random sizes, filter bytes and pixels, in well-formed chunks: pixels Pillow agrees
    with, or None; never an exception."""
    rng = np.random.default_rng(0)
    read = 0
    for _ in range(400):
        w, h = (int(v) for v in rng.integers(0, 70, 2))
        rows = rng.integers(0, 256, (h, w + 1), np.uint8)
        rows[:, 0] = rng.choice(5, h, p=[0.5, 0.2, 0.2, 0.05, 0.05])
        if h and rng.random() < 0.2:  # a filter type PNG does not have
            rows[rng.integers(h), 0] = rng.choice([5, 255])
        extra = int(rng.integers(-2, 3)) if rng.random() < 0.3 else 0
        raw = rows.tobytes()[: max(0, rows.size + extra)] + bytes(max(0, extra))
        data = _rebuilt(struct.pack(">II", w, h) + b"\x08\x00\x00\x00\x00", raw)
        assert _agrees_with_pillow(data)
        read += png.read(data) is not None
    assert read > 100  # many were read, not only declined


def test_damaged_deflate_data_agrees_with_pillow() -> None:
    """A good file's compressed bytes changed (checksums made right again)."""
    a = digits()
    z = zlib.compress(_filtered(a, [k % 3 for k in range(28)]))
    header = struct.pack(">II", 28, 28) + b"\x08\x00\x00\x00\x00"
    rng = np.random.default_rng(1)
    for _ in range(300):
        bad = bytearray(z)
        for i in rng.integers(0, len(bad), rng.integers(1, 4)):
            bad[i] = rng.integers(0, 256)
        data = _rebuilt(header, z=bytes(bad[: int(rng.integers(len(bad) // 2, len(bad) + 1))]))
        try:
            assert _agrees_with_pillow(data)
        except (OSError, SyntaxError, ValueError, zlib.error):  # Pillow refused it: so must we
            assert png.read(data) is None


def test_a_deflate_bomb_is_not_inflated() -> None:
    """100 MB of zeros in a 28x28 file: at most one byte past the image is inflated."""
    bomb = zlib.compress(bytes(100 * 2**20), 9)  # about 100 kB
    data = encode(digits(), data=b"")  # replaced below: the IDAT holds the bomb
    head = data[: data.index(b"IDAT") - 4]
    data = head + _chunk(b"IDAT", bomb) + _chunk(b"IEND", b"")
    assert len(data) > png.MAX_BYTES  # too big a file for this reader: Pillow's business
    small = head + _chunk(b"IDAT", zlib.compress(bytes(29 * 28 + 10**6), 9)) + _chunk(b"IEND", b"")
    assert len(small) <= png.MAX_BYTES
    assert png.read(small) is None
