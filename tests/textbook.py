"""The textbook's ch.3 inference code, copied plainly: the reference our results must equal."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

from mnist_infer.idx import read_pair


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    x = x.T
    x = x - np.max(x, axis=0)
    y = np.exp(x) / np.sum(np.exp(x), axis=0)
    return y.T


def predict(network, x):
    W1, W2, W3 = network["W1"], network["W2"], network["W3"]
    b1, b2, b3 = network["b1"], network["b2"], network["b3"]
    a1 = np.dot(x, W1) + b1
    z1 = sigmoid(a1)
    a2 = np.dot(z1, W2) + b2
    z2 = sigmoid(a2)
    a3 = np.dot(z2, W3) + b3
    y = softmax(a3)
    return y


def textbook_labels(network, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """What the textbook's batch script predicts for uint8 images."""
    x = images.astype(np.float32) / 255.0
    p = np.empty(len(x), dtype=np.int64)
    with np.errstate(over="ignore"):
        for i in range(0, len(x), batch_size):
            y_batch = predict(network, x[i : i + batch_size])
            p[i : i + batch_size] = np.argmax(y_batch, axis=1)
    return p


@functools.cache
def real_test_set(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The real test images (n, 784) uint8 and labels, read from the .gz files."""
    return read_pair(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz"
    )


@functools.cache
def reference_labels(mnist_dir: Path, weights: Path) -> np.ndarray:
    """The textbook's predictions for the real test set with the textbook's weights file."""
    with open(weights, "rb") as f:
        network = pickle.load(f)  # the trusted reference file, loaded as the book does
    return textbook_labels(network, real_test_set(mnist_dir)[0])
