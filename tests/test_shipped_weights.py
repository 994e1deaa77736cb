"""The weights in weights/: the textbook's format, trained by `mnist-infer train`; the default
reaches 99% on test, calibrated, and the book-shaped `small` 98%."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from textbook import real_test_set, textbook_labels

from mnist_infer.cli import cli
from mnist_infer.shipped import SHIPPED as NAMES
from mnist_infer.shipped import default_weights_path, weights_path
from mnist_infer.weights import file_sha256, load_weights, read_metadata

SHIPPED = default_weights_path(check=False)
# short name: (hidden layer sizes, least test accuracy)
EXPECTED = {"default": ((800, 300), 0.99), "small": ((50, 100), 0.98)}


def test_every_shipped_name_is_checked() -> None:
    assert sorted(EXPECTED) == sorted(NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_file_is_in_the_textbook_format(name: str) -> None:
    path = weights_path(name)
    sizes = [784, *EXPECTED[name][0], 10]
    with open(path, "rb") as f:
        network = pickle.load(f)  # our own file, read as the book's chapter-3 code reads it
    assert sorted(network) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert [network[f"W{i}"].shape for i in (1, 2, 3)] == list(itertools.pairwise(sizes))
    assert [network[f"b{i}"].shape for i in (1, 2, 3)] == [(n,) for n in sizes[1:]]
    assert all(type(a) is np.ndarray and a.dtype == np.float32 for a in network.values())
    safe = load_weights(path)
    for k, a in network.items():
        np.testing.assert_array_equal(safe[k], a)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metadata_describes_the_file(name: str) -> None:
    path = weights_path(name)
    hidden, least = EXPECTED[name]
    meta = read_metadata(path)
    assert meta is not None
    assert meta["weights_sha256"] == file_sha256(path)
    assert meta["architecture"] == "-".join(map(str, [784, *hidden, 10]))
    assert meta["test_accuracy"] >= least
    assert meta["options"]["val_size"] > 0  # selected on held-out training images, not test
    assert meta["final_val_accuracy"] >= 0.98


@pytest.fixture(scope="module")
def real_cache(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("real-cache")
    args = ["download", "-q", "--split", "test", "--mirror", str(real_mnist_dir)]
    res = CliRunner().invoke(cli, [*args, "--cache-dir", str(cache)])
    assert res.exit_code == 0, res.output
    return cache


def test_default_weights_reach_the_recorded_accuracy(real_cache: Path) -> None:
    meta = read_metadata(SHIPPED)
    assert meta is not None
    res = CliRunner().invoke(cli, ["evaluate", "-q", "--cache-dir", str(real_cache)])
    assert res.exit_code == 0, res.output
    correct = round(meta["test_accuracy"] * 10000)
    assert res.output == f"Accuracy: {meta['test_accuracy']:.4f} ({correct}/10000)\n"
    assert correct >= 9900


def test_default_weights_are_calibrated(real_cache: Path) -> None:
    res = CliRunner().invoke(cli, ["evaluate", "--json", "--cache-dir", str(real_cache)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ece"] <= 0.02
    meta = read_metadata(SHIPPED)
    assert meta is not None
    assert meta["temperature"] > 0


def test_textbook_code_agrees_on_the_shipped_weights(real_mnist_dir: Path) -> None:
    with open(SHIPPED, "rb") as f:
        network = pickle.load(f)
    images, labels = real_test_set(real_mnist_dir)
    accuracy = float(np.mean(textbook_labels(network, images) == labels))
    assert accuracy >= 0.99
