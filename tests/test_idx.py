from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_infer.errors import IdxFormatError
from mnist_infer.idx import read_images, read_labels, read_pair, write_idx

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8)
LABELS = np.array([3, 0, 9], dtype=np.uint8)


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    return header + a.tobytes()


@pytest.mark.parametrize("name", ["imgs", "imgs.gz"])
def test_images_roundtrip(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    write_idx(p, IMAGES)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    flat = read_images(p)
    assert flat.shape == (3, 784)
    assert flat.dtype == np.uint8
    assert flat.flags.c_contiguous
    np.testing.assert_array_equal(flat.reshape(3, 28, 28), IMAGES)
    np.testing.assert_array_equal(read_images(p, flatten=False), IMAGES)


@pytest.mark.parametrize("name", ["labels", "labels.gz"])
def test_labels_roundtrip(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    write_idx(p, LABELS)
    np.testing.assert_array_equal(read_labels(p), LABELS)


def test_raw_bytes_match_the_format(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", IMAGES)
    assert (tmp_path / "x").read_bytes() == idx_bytes(IMAGES)
    assert (tmp_path / "x").read_bytes()[:8] == bytes.fromhex("0000080300000003")


def test_gz_name_with_raw_content_is_read_by_magic(tmp_path: Path) -> None:
    p = tmp_path / "labels.gz"
    p.write_bytes(idx_bytes(LABELS))
    np.testing.assert_array_equal(read_labels(p), LABELS)


def test_read_pair(tmp_path: Path) -> None:
    write_idx(tmp_path / "i.gz", IMAGES)
    write_idx(tmp_path / "l", LABELS)
    x, t = read_pair(tmp_path / "i.gz", tmp_path / "l")
    assert x.shape == (3, 784)
    np.testing.assert_array_equal(t, LABELS)


def test_read_pair_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "i", IMAGES)
    write_idx(tmp_path / "l", LABELS[:2])
    with pytest.raises(IdxFormatError) as e:
        read_pair(tmp_path / "i", tmp_path / "l")
    msg = str(e.value)
    assert str(tmp_path / "i") in msg
    assert str(tmp_path / "l") in msg
    assert "3 images" in msg
    assert "2 labels" in msg


def _gz(b: bytes) -> bytes:
    return gzip.compress(b, mtime=0)


GOOD = idx_bytes(IMAGES)
BAD_CASES = {
    "empty": ("x", b"", "file is empty"),
    "empty-gz": ("x.gz", _gz(b""), "file is empty (after gunzip)"),
    "short-magic": ("x", b"\x00\x00", "header truncated: expected a 4-byte magic number, found 2"),
    "short-dims": ("x", GOOD[:8], "expected 12 bytes of dimensions, found 4"),
    "labels-as-images": (
        "x",
        idx_bytes(LABELS),
        "wrong magic number 0x00000801 (an IDX labels file); expected 0x00000803",
    ),
    "garbage-named-gz": (
        "x.gz",
        b"<html>not a file</html>",
        "wrong magic number 0x3c68746d (not an IDX file; named .gz but not gzip data)",
    ),
    "truncated": (
        "x",
        GOOD[:-10],
        "payload truncated: header says 3x28x28 = 2,352 bytes, found 2,342",
    ),
    "over-long": (
        "x",
        GOOD + b"\0",
        "payload over-long: header says 3x28x28 = 2,352 bytes, found 2,353",
    ),
    "truncated-gz": ("x.gz", _gz(GOOD[:-1]), "payload truncated (after gunzip)"),
    "over-long-gz": ("x.gz", _gz(GOOD + b"abc"), "found more than 2,352"),
    "corrupt-gz": ("x.gz", b"\x1f\x8b" + b"\x08junkjunkjunk", "corrupt gzip data"),
    "cut-gz": ("x.gz", _gz(GOOD)[:-20], "corrupt gzip data"),
    "huge-count": ("x", GOOD[:4] + b"\xff\xff\xff\xff" + GOOD[8:], "header says 4294967295x28x28"),
    "small-images": (
        "x",
        idx_bytes(np.zeros((2, 14, 14), np.uint8)),
        "expected 28x28 images, found 14x14",
    ),
}


@pytest.mark.parametrize(("name", "data", "fragment"), BAD_CASES.values(), ids=BAD_CASES.keys())
def test_malformed_images(tmp_path: Path, name: str, data: bytes, fragment: str) -> None:
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(IdxFormatError) as e:
        read_images(p)
    assert str(e.value).startswith(f"{p}: ")
    assert fragment in str(e.value)
    assert e.value.exit_code == 5


def test_labels_out_of_range(tmp_path: Path) -> None:
    p = tmp_path / "l"
    write_idx(p, np.array([1, 12], np.uint8))
    with pytest.raises(IdxFormatError, match="labels must be digits 0-9, found the value 12"):
        read_labels(p)


def test_images_as_labels(tmp_path: Path) -> None:
    p = tmp_path / "i"
    write_idx(p, IMAGES)
    with pytest.raises(
        IdxFormatError, match=r"0x00000803 \(an IDX images file\); expected 0x0+801"
    ):
        read_labels(p)


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()], ids=["missing", "dir"])
def test_unreadable(tmp_path: Path, make: Callable[[Path], None]) -> None:
    p = tmp_path / "nope"
    make(p)
    with pytest.raises(IdxFormatError, match="cannot read"):
        read_labels(p)


def test_write_idx_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "f", np.zeros(3, np.float32))
    assert not (tmp_path / "f").exists()
