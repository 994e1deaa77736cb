"""The C kernel for the first layer, against numpy, and classify with and without it."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_network import random_images, random_params
from textbook import real_test_set, reference_labels

from mnist_infer import network
from mnist_infer.network import Network
from mnist_infer.weights import load_weights

SOURCE = Path(network.__file__).with_name("_ink.c")


def _kernel():  # type: ignore[no-untyped-def]
    try:
        from mnist_infer import _ink
    except ImportError:
        return None
    return _ink


def test_kernel_is_built_where_a_compiler_is() -> None:
    if platform.machine() not in ("x86_64", "AMD64") or not SOURCE.is_file():
        pytest.skip("the kernel is only built for x86-64 source installs")
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("no C compiler here, so the kernel was not built")
    assert _kernel() is not None, "mnist_infer/_ink.c did not build: see `pip install -v -e .`"


@pytest.fixture
def ink():  # type: ignore[no-untyped-def]
    k = _kernel()
    if k is None or not k.supported():
        pytest.skip("the C kernel is not built, or this CPU lacks AVX2 and FMA")
    return k


def panels(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W1 and b1 laid out as the kernel reads them: panels of 64 columns, zero-padded."""
    d, h = w.shape
    cols = -(-h // 64) * 64
    padded = np.zeros((d + 1, cols), np.float32)
    padded[:d, :h], padded[d, :h] = w, b
    return np.ascontiguousarray(padded.reshape(d + 1, cols // 64, 64).transpose(1, 0, 2))


@pytest.mark.parametrize(
    ("n", "d", "h"),
    [(5, 784, 50), (3, 1, 1), (4, 31, 64), (4, 32, 65), (4, 33, 100), (2, 100, 130), (0, 784, 50)],
)
@pytest.mark.parametrize("ink_share", [0.0, 0.2, 1.0])
def test_first_layer_equals_numpy(ink, n: int, d: int, h: int, ink_share: float) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(n * 1000 + d + h)
    x = rng.integers(1, 256, (n, d), dtype=np.uint8)
    x[rng.random((n, d)) >= ink_share] = 0
    w = rng.normal(size=(d, h)).astype(np.float32)
    b = rng.normal(size=h).astype(np.float32)
    out = np.full((n, h + 3), -7.0, np.float32)  # a wider row: the rest must stay untouched
    ink.first_layer(x, d, panels(w, b), -(-h // 64) * 64, out, h + 3, h)
    want = x.astype(np.float64) @ w + b
    np.testing.assert_allclose(out[:, :h], want, rtol=1e-5, atol=1e-3)
    assert (out[:, h:] == -7.0).all()


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"d": 0}, ValueError, r"x holds 20 bytes, not rows of d=0 pixels"),
        ({"d": 3}, ValueError, r"x holds 20 bytes, not rows of d=3 pixels"),
        ({"wcols": 32}, ValueError, r"w holds 1280 bytes, expected 5 rows of wcols=32 floats"),
        ({"w": np.zeros((5, 32), np.float32)}, ValueError, r"w holds 640 bytes"),
        ({"h": 0}, ValueError, r"w holds 1280 bytes"),
        ({"h": 65}, ValueError, r"w holds 1280 bytes"),
        ({"out": np.zeros((5, 9), np.float32)}, ValueError, r"out holds 180 bytes, too few"),
        ({"ostride": 5}, ValueError, r"out holds 200 bytes, too few for 5 rows of 5 floats"),
        ({"x": np.zeros((5, 8), np.uint8)[:, ::2]}, ValueError, r"not C-contiguous"),
        ({"out": np.zeros((5, 10), np.float32)[::-1]}, TypeError, r"read-write bytes-like"),
        ({"out": b"\0" * 200}, TypeError, r"read-write bytes-like object, not bytes"),
    ],
)
def test_first_layer_rejects_bad_buffers(ink, args: dict, error: type, message: str) -> None:  # type: ignore[no-untyped-def]
    call = {
        "x": np.ones((5, 4), np.uint8),
        "d": 4,
        "w": np.zeros((1, 5, 64), np.float32),
        "wcols": 64,
        "out": np.zeros((5, 10), np.float32),
        "ostride": 10,
        "h": 8,
    } | args
    with pytest.raises(error, match=message):
        ink.first_layer(*call.values())


# --- classify with and without the kernel -------------------------------------------


@pytest.fixture(params=["kernel", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the kernel (skipped where it cannot run) and with numpy alone."""
    if request.param == "numpy":
        monkeypatch.setenv("MNIST_INFER_NUMPY_ONLY", "1")
    elif network._ink_kernel() is None:
        pytest.skip("the C kernel is not built, or this CPU lacks AVX2 and FMA")
    return str(request.param)


def test_forward_uses_the_kernel_only_where_it_can(path: str) -> None:
    fwd = network._Forward(Network(random_params()).affines, np.dtype(np.float32))
    assert (fwd.ink is not None) == (path == "kernel")
    double = network._Forward(Network(random_params(), np.float64).affines, np.dtype(np.float64))
    assert double.ink is None  # float64 networks stay on numpy
    one_layer = network._Forward(Network(random_params((784, 10))).affines, np.dtype(np.float32))
    assert one_layer.ink is None


@pytest.mark.parametrize("sizes", [(784, 50, 100, 10), (784, 10), (784, 130, 10), (784, 64, 10)])
def test_classify_equals_predict(path: str, sizes: tuple[int, ...]) -> None:
    net = Network(random_params(sizes, scale=0.05))
    images = random_images(300)
    images[::3, :500] = 0  # blank stretches, as in real digits
    y = net.predict(images.astype(np.float32) / 255.0)
    labels, conf = net.classify(images, 64)
    np.testing.assert_array_equal(labels, y.argmax(axis=1))
    np.testing.assert_allclose(conf, y.max(axis=1), rtol=1e-5)


def test_classify_reads_non_contiguous_images(path: str) -> None:
    net = Network(random_params())
    images = random_images(40)
    wide = np.zeros((40, 2 * 784), np.uint8)
    wide[:, ::2] = images
    np.testing.assert_array_equal(net.classify(wide[:, ::2], 16)[0], net.classify(images, 16)[0])


def test_textbook_labels_on_both_paths(
    path: str, real_mnist_dir: Path, reference_weights: Path
) -> None:
    images, labels = real_test_set(real_mnist_dir)
    preds, _ = Network(load_weights(reference_weights)).classify(images, 1000)
    assert np.count_nonzero(preds == labels) / len(labels) == 0.9352
    np.testing.assert_array_equal(preds, reference_labels(real_mnist_dir, reference_weights))
