from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from mnist_infer.functions import (
    cross_entropy_error,
    identity_function,
    relu,
    sigmoid,
    softmax,
    step_function,
)
from mnist_infer.layers import Affine, Layer, Relu, Sigmoid, SoftmaxWithLoss
from mnist_infer.network import Network

FLOATS = [np.float32, np.float64]


def numerical_gradient(f: Callable[[], float], a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of f() with respect to each element of a (changed in place)."""
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        keep = a[i]
        a[i] = keep + h
        up = f()
        a[i] = keep - h
        down = f()
        a[i] = keep
        grad[i] = (up - down) / (2 * h)
    return grad


# --- functions -------------------------------------------------------------------


def test_softmax_large_inputs_stay_finite() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = softmax(np.array([1010.0, 1000.0, 990.0]))
    assert np.all(np.isfinite(y))
    assert y.sum() == pytest.approx(1.0)
    e = np.exp([0.0, -10.0, -20.0])
    np.testing.assert_allclose(y, e / e.sum())


@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_keeps_dtype_and_rows_sum_to_one(dtype: type) -> None:
    x = np.array([[1000, -1000, 0], [1, 2, 3]], dtype=dtype)
    y = softmax(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    assert y[0].argmax() == 0


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_extremes_without_warnings(dtype: type) -> None:
    x = np.array([-1000, -100, -1, 0, 1, 100, 1000], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sigmoid(x)
    assert y.dtype == dtype
    assert np.all(np.isfinite(y))
    assert y[0] == pytest.approx(0.0, abs=1e-30)
    assert y[-1] == 1.0
    assert y[3] == 0.5
    assert np.all(np.diff(y) >= 0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_sigmoid_matches_textbook_formula_in_range(dtype: type) -> None:
    x = np.linspace(-30, 30, 601, dtype=dtype)
    np.testing.assert_array_equal(sigmoid(x), 1 / (1 + np.exp(-x)))


def test_step_identity_relu() -> None:
    x = np.array([-2.0, -0.0, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(step_function(x), [0, 0, 0, 1, 1])
    assert step_function(x).dtype.kind == "i"  # ints, as the book's np.array(x > 0, dtype=int)
    assert identity_function(x) is x
    np.testing.assert_array_equal(relu(x), [0, 0, 0, 0.5, 3.0])


@pytest.mark.parametrize(("x", "want"), [(-1.0, 0), (0, 0), (0.1, 1), (3, 1), (np.float32(2), 1)])
def test_step_function_of_a_number_is_an_int(x: float, want: int) -> None:
    y = step_function(x)
    assert type(y) is int
    assert y == want


@pytest.mark.parametrize("fn", [sigmoid, softmax, relu, step_function])
def test_functions_take_lists(fn: Callable[[object], np.ndarray]) -> None:
    np.testing.assert_array_equal(fn([-1.0, 1.0, 2.0]), fn(np.array([-1.0, 1.0, 2.0])))


@pytest.mark.parametrize("fn", [sigmoid, softmax, relu, step_function])
def test_batched_equals_per_sample(fn: Callable[[np.ndarray], np.ndarray]) -> None:
    x = np.random.default_rng(0).normal(scale=50, size=(7, 10))
    batched = fn(x)
    for i in range(len(x)):
        np.testing.assert_array_equal(batched[i], fn(x[i]))


def test_cross_entropy_indices_and_one_hot_agree() -> None:
    y = softmax(np.random.default_rng(1).normal(size=(5, 10)))
    t = np.array([0, 3, 9, 2, 2])
    one_hot = np.eye(10)[t]
    want = -np.mean(np.log(y[np.arange(5), t]))
    assert cross_entropy_error(y, t) == pytest.approx(want)
    assert cross_entropy_error(y, one_hot) == pytest.approx(want)


# --- layers: backward against numerical gradients ----------------------------------


def _rng() -> np.random.Generator:
    return np.random.default_rng(42)


def _check_input_gradient(layer: Layer, x: np.ndarray) -> None:
    """backward(dout) equals the numerical gradient of sum(forward(x) * dout)."""
    dout = _rng().normal(size=layer.forward(x).shape)
    layer.forward(x)
    analytic = layer.backward(dout)
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * dout)), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_affine_backward() -> None:
    rng = _rng()
    w, b, x = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(5, 4))
    layer = Affine(w, b)
    _check_input_gradient(layer, x)
    dout = rng.normal(size=(5, 3))

    def f() -> float:
        return float(np.sum(layer.forward(x) * dout))

    layer.forward(x)
    layer.backward(dout)
    dw, db = layer.grads
    np.testing.assert_allclose(dw, numerical_gradient(f, w), rtol=1e-5)
    np.testing.assert_allclose(db, numerical_gradient(f, b), rtol=1e-5)


def test_sigmoid_backward() -> None:
    _check_input_gradient(Sigmoid(), _rng().normal(scale=3, size=(4, 6)))


def test_relu_backward() -> None:
    _check_input_gradient(Relu(), _rng().normal(scale=3, size=(4, 6)))


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_with_loss_backward(one_hot: bool) -> None:
    rng = _rng()
    x = rng.normal(scale=2, size=(6, 5))
    t = rng.integers(0, 5, size=6)
    labels = np.eye(5)[t] if one_hot else t
    layer = SoftmaxWithLoss()
    layer.forward(x, labels)
    analytic = layer.backward()
    numeric = numerical_gradient(lambda: layer.forward(x, labels), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def _small_params(sizes: list[int], seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes), 1):
        params[f"W{i}"] = rng.normal(size=(a, b))
        params[f"b{i}"] = rng.normal(size=b)
    return params


@pytest.mark.parametrize("sizes", [[4, 3], [5, 4, 3], [6, 5, 4, 3]])
def test_network_gradient_matches_numerical(sizes: list[int]) -> None:
    net = Network(_small_params(sizes), dtype=np.float64)
    rng = _rng()
    x = rng.random(size=(7, sizes[0]))
    t = rng.integers(0, sizes[-1], size=7)
    grads = net.gradient(x, t)
    assert sorted(grads) == sorted(net.params)
    for key, p in net.params.items():
        numeric = numerical_gradient(lambda: net.loss(x, t), p)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-4, atol=1e-8, err_msg=key)
