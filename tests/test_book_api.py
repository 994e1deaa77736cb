"""The books' conventions: perceptron gates, layers whose params and grads are lists, and the
sequel's TwoLayerNet."""

from __future__ import annotations

import numpy as np
import pytest
from test_functions import numerical_gradient

from mnist_infer.functions import softmax
from mnist_infer.layers import Affine, Relu, Sigmoid, Softmax, SoftmaxWithLoss
from mnist_infer.network import TwoLayerNet
from mnist_infer.perceptron import AND, NAND, OR, XOR

INPUTS = [(0, 0), (1, 0), (0, 1), (1, 1)]


@pytest.mark.parametrize(
    ("gate", "outputs"),
    [(AND, [0, 0, 0, 1]), (NAND, [1, 1, 1, 0]), (OR, [0, 1, 1, 1]), (XOR, [0, 1, 1, 0])],
)
def test_gates_truth_tables(gate, outputs: list[int]) -> None:
    got = [gate(x1, x2) for x1, x2 in INPUTS]
    assert got == outputs
    assert all(type(y) is int for y in got)


@pytest.mark.parametrize("layer", [Sigmoid(), Relu(), Softmax(), SoftmaxWithLoss()])
def test_layers_without_parameters_have_empty_lists(layer) -> None:
    assert (layer.params, layer.grads) == ([], [])


def test_affine_params_and_grads_are_lists_in_the_books_order() -> None:
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    layer = Affine(W, b)
    assert isinstance(layer.params, list)
    w, bias = layer.params
    assert w is W
    assert bias is b
    assert (layer.W, layer.b) == (W, b)
    dw, db = layer.grads
    assert (dw.shape, db.shape) == (W.shape, b.shape)
    x, dout = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(layer.forward(x), np.matmul(x, W) + b)
    layer.backward(dout)
    assert layer.grads[0] is dw  # written in place: lists gathered before stay valid
    assert layer.dW is dw
    np.testing.assert_allclose(dw, x.T @ dout)
    np.testing.assert_allclose(layer.db, dout.sum(axis=0))


def test_affine_takes_one_sample_and_image_batches() -> None:
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(784, 3)), rng.normal(size=3)
    layer = Affine(W, b)
    x = rng.random(size=(2, 1, 28, 28))
    np.testing.assert_allclose(layer.forward(x), x.reshape(2, 784) @ W + b)
    np.testing.assert_allclose(layer.forward(x[0, 0].ravel()), x[0].ravel() @ W + b)
    layer.backward(np.ones(3))
    np.testing.assert_allclose(layer.dW, np.outer(x[0].ravel(), np.ones(3)))


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_with_loss_forward_returns_the_loss(one_hot: bool) -> None:
    x = np.array([[0.3, 2.9, 4.0], [1010.0, 1000.0, 990.0]])
    t = np.array([2, 0])
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, np.eye(3)[t] if one_hot else t)
    y = softmax(x)
    want = -np.mean(np.log(y[[0, 1], t]))
    assert loss == pytest.approx(want)
    assert layer.loss == loss
    np.testing.assert_allclose(layer.y, y)
    np.testing.assert_allclose(layer.backward(), (y - np.eye(3)[t]) / 2)


def test_two_layer_net_is_the_sequels() -> None:
    np.random.seed(0)  # noqa: NPY002 (the book's global generator)
    model = TwoLayerNet(input_size=2, hidden_size=4, output_size=3)
    assert [type(layer) for layer in model.layers] == [Affine, Sigmoid, Affine]
    shapes = [p.shape for p in model.params]
    assert shapes == [(2, 4), (4,), (4, 3), (3,)]
    first, _, last = model.layers
    assert all(p is q for p, q in zip(model.params, first.params + last.params, strict=True))
    x = np.random.randn(10, 2)  # noqa: NPY002
    s = model.predict(x)
    W1, b1, W2, b2 = model.params
    h = 1 / (1 + np.exp(-(np.matmul(x, W1) + b1)))
    np.testing.assert_allclose(s, np.matmul(h, W2) + b2)


def test_two_layer_net_grads_are_the_loss_gradients() -> None:
    """forward gives the loss; backward fills grads, in the order of params, in place."""
    np.random.seed(1)  # noqa: NPY002
    model = TwoLayerNet(3, 5, 4)
    x = np.random.randn(6, 3)  # noqa: NPY002
    t = np.array([0, 1, 2, 3, 3, 1])
    grads = list(model.grads)
    model.forward(x, t)
    model.backward()
    assert all(g is h for g, h in zip(model.grads, grads, strict=True))
    for p, g in zip(model.params, model.grads, strict=True):
        numeric = numerical_gradient(lambda: model.forward(x, t), p)
        np.testing.assert_allclose(g, numeric, rtol=1e-4, atol=1e-8)
