"""Baseline: the textbook's chapter-3 batch inference script (neuralnet_mnist_batch.py), as written.

Usage: python textbook_ch3.py DATASET_PKL WEIGHTS_PKL
DATASET_PKL is the textbook's mnist.pkl dataset cache (made by `init_mnist`);
WEIGHTS_PKL is the textbook's sample_weight.pkl.
"""

from __future__ import annotations

import gzip
import pickle
import sys

import numpy as np

IMG_SIZE = 784


def _load_img(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = np.frombuffer(f.read(), np.uint8, offset=16)
    return data.reshape(-1, IMG_SIZE)


def _load_label(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)


def init_mnist(idx_dir: str, save_file: str) -> None:
    """Pickle the four IDX files as one dict, as the textbook's mnist.py does on first use."""
    dataset = {
        "train_img": _load_img(f"{idx_dir}/train-images-idx3-ubyte.gz"),
        "train_label": _load_label(f"{idx_dir}/train-labels-idx1-ubyte.gz"),
        "test_img": _load_img(f"{idx_dir}/t10k-images-idx3-ubyte.gz"),
        "test_label": _load_label(f"{idx_dir}/t10k-labels-idx1-ubyte.gz"),
    }
    with open(save_file, "wb") as f:
        pickle.dump(dataset, f, -1)


def load_mnist(save_file: str, normalize: bool = True, flatten: bool = True) -> tuple:
    """The textbook's load_mnist (one_hot_label=False): every split normalised to float32."""
    with open(save_file, "rb") as f:
        dataset = pickle.load(f)
    if normalize:
        for key in ("train_img", "test_img"):
            dataset[key] = dataset[key].astype(np.float32)
            dataset[key] /= 255.0
    if not flatten:
        for key in ("train_img", "test_img"):
            dataset[key] = dataset[key].reshape(-1, 1, 28, 28)
    return (dataset["train_img"], dataset["train_label"]), (
        dataset["test_img"],
        dataset["test_label"],
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def init_network(weights_file: str) -> dict:
    with open(weights_file, "rb") as f:
        return pickle.load(f)


def predict(network: dict, x: np.ndarray) -> np.ndarray:
    W1, W2, W3 = network["W1"], network["W2"], network["W3"]
    b1, b2, b3 = network["b1"], network["b2"], network["b3"]
    a1 = np.dot(x, W1) + b1
    z1 = sigmoid(a1)
    a2 = np.dot(z1, W2) + b2
    z2 = sigmoid(a2)
    a3 = np.dot(z2, W3) + b3
    return softmax(a3)


def accuracy(network: dict, x: np.ndarray, t: np.ndarray, batch_size: int = 100) -> float:
    """The textbook's batch loop."""
    accuracy_cnt = 0
    for i in range(0, len(x), batch_size):
        y_batch = predict(network, x[i : i + batch_size])
        p = np.argmax(y_batch, axis=1)
        accuracy_cnt += np.sum(p == t[i : i + batch_size])
    return float(accuracy_cnt) / len(x)


def main(dataset_file: str, weights_file: str) -> None:
    (_, _), (x, t) = load_mnist(dataset_file, normalize=True, flatten=True)
    network = init_network(weights_file)
    print("Accuracy:" + str(accuracy(network, x, t, batch_size=100)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
