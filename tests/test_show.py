"""`mnist-infer show`: dataset digits exported as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from loopback import MiniMnist
from PIL import Image
from textbook import real_test_set

from mnist_infer.cli import cli
from mnist_infer.shipped import default_weights_path

TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def show(*args: str) -> Result:
    return CliRunner().invoke(cli, ["show", *args])


def test_writes_pngs_and_prints_their_paths(filled: MiniMnist, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = show("--index", "5", "--count", "3", "--out", str(out))
    assert res.exit_code == 0, res.output
    images, labels = filled.arrays[TEST_IMAGES], filled.arrays[TEST_LABELS]
    expected = [out / f"test-{i:05d}-label{labels[i]}.png" for i in (5, 6, 7)]
    assert res.stdout.splitlines() == [str(p) for p in expected]
    for i, p in zip((5, 6, 7), expected, strict=True):
        assert np.array_equal(np.asarray(Image.open(p)), images[i])


def test_train_split(filled: MiniMnist, tmp_path: Path) -> None:
    res = show("--split", "train", "--count", "1", "--out", str(tmp_path))
    label = filled.arrays["train-labels-idx1-ubyte"][0]
    assert res.stdout == f"{tmp_path / f'train-00000-label{label}.png'}\n"
    img = np.asarray(Image.open(tmp_path / f"train-00000-label{label}.png"))
    assert np.array_equal(img, filled.arrays["train-images-idx3-ubyte"][0])


def test_art(filled: MiniMnist, tmp_path: Path) -> None:
    res = show("--count", "2", "--art", "--out", str(tmp_path))
    lines = res.stdout.split("\n")
    images = filled.arrays[TEST_IMAGES]
    ramp = " .:-=+*#%@"
    for k in range(2):
        block = lines[k * 30 : k * 30 + 30]
        assert block[0].endswith(".png")
        want = ["".join(2 * ramp[int(v) * 10 >> 8] for v in row) for row in images[k]]
        assert block[1:29] == want
        assert block[29] == ""


def test_count_past_the_end_stops_at_the_last_digit(filled: MiniMnist, tmp_path: Path) -> None:
    res = show("--index", "48", "--count", "10", "--out", str(tmp_path))
    assert res.exit_code == 0
    assert [Path(p).name[:10] for p in res.stdout.splitlines()] == ["test-00048", "test-00049"]


def test_index_past_the_end(filled: MiniMnist, tmp_path: Path) -> None:
    res = show("--index", "50", "--out", str(tmp_path / "out"))
    assert res.exit_code == 2
    assert res.stderr == "Error: --index 50 is past the end: the test split has 50 images\n"
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(filled: MiniMnist, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    res = show("--out", str(tmp_path / "f"))
    assert res.exit_code == 2
    assert f"Directory '{tmp_path / 'f'}' is a file." in res.stderr


def test_out_inside_a_file(filled: MiniMnist, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    res = show("--out", str(tmp_path / "f" / "sub"))
    assert res.exit_code == 1
    assert res.stderr == (
        f"Error: cannot write to folder {tmp_path / 'f' / 'sub'}: {tmp_path / 'f'} is a file\n"
    )


def test_split_not_cached_and_mirror_empty(tmp_path: Path, cache_dir: Path) -> None:
    res = show("--mirror", str(tmp_path), "--out", str(tmp_path / "out"))
    assert res.exit_code == 3
    assert res.stderr == (
        f"Note: downloading the MNIST test split into {cache_dir} (first use)\n"
        f"Error: could not download {TEST_IMAGES}.gz from any mirror ({tmp_path} -> neither"
        f" {TEST_IMAGES}.gz nor {TEST_IMAGES} is in {tmp_path}); {tmp_path} must hold"
        f" {TEST_IMAGES}.gz and {TEST_LABELS}.gz (gzipped or decompressed; names without .gz"
        " work too)\n"
    )
    assert not (tmp_path / "out").exists()


def test_real_digits_from_a_mirror_predict_right(real_mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "digits"
    res = show("--count", "3", "--out", str(out), "--mirror", str(real_mnist_dir))
    assert res.exit_code == 0, res.output
    names = ["test-00000-label7.png", "test-00001-label2.png", "test-00002-label1.png"]
    assert res.stdout.splitlines() == [str(out / n) for n in names]
    x, _ = real_test_set(real_mnist_dir)
    for i, n in enumerate(names):
        assert np.array_equal(np.asarray(Image.open(out / n)).ravel(), x[i])
    if not default_weights_path(check=False).is_file():
        pytest.skip("no shipped default weights")
    pred = CliRunner().invoke(cli, ["predict", str(out)])
    assert [line.split("  ")[1] for line in pred.stdout.splitlines()] == ["7", "2", "1"]
