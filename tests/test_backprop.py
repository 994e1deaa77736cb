"""The training kernel against a plain float64 reference and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_infer.backprop import Backprop, logits
from mnist_infer.optimizers import OPTIMIZERS
from mnist_infer.train import init_params


def _loss64(p: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, k: int) -> float:
    """The mean loss in float64, written out: digits' cross-entropy, non-digits' mean -log p."""
    n = len(p) // 2
    a = x.astype(np.float64)
    for i in range(1, n + 1):
        a = a @ p[f"W{i}"].astype(np.float64) + p[f"b{i}"]
        if i < n:
            a = 1 / (1 + np.exp(-a))
    logp = a - a.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    nd = len(x) - k
    per_row = np.concatenate([-logp[np.arange(nd), t], -logp[nd:].mean(axis=1)])
    return float(per_row.mean())


def _case(
    rows: int, k: int, sizes: list[int], seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = init_params(sizes, rng)
    for key in p:  # biases away from zero, so their gradients are tested too
        p[key] += rng.normal(0, 0.3, p[key].shape).astype(np.float32)
    x = rng.random((rows, sizes[0]), dtype=np.float32)
    t = rng.integers(0, 10, rows - k)
    return p, x, t


@pytest.mark.parametrize(
    ("rows", "outliers", "sizes"),
    [(7, 0, [6, 5, 4, 10]), (7, 3, [6, 5, 4, 10]), (5, 5, [4, 8, 10]), (9, 2, [5, 3, 4, 6, 10])],
)
def test_gradients_match_finite_differences(rows: int, outliers: int, sizes: list[int]) -> None:
    p, x, t = _case(rows, outliers, sizes)
    kernel = Backprop(p, rows)
    kernel.gradient(x, t, outliers)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    eps = 1e-6
    for key, g in kernel.grads.items():
        num = np.zeros(g.shape)
        for i in np.ndindex(g.shape):
            old = p64[key][i]
            p64[key][i] = old + eps
            up = _loss64(p64, x, t, outliers)
            p64[key][i] = old - eps
            down = _loss64(p64, x, t, outliers)
            p64[key][i] = old
            num[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-5, err_msg=key)


def test_losses_and_hits_are_those_of_the_reference() -> None:
    p, x, t = _case(12, 4, [6, 7, 10], seed=2)
    kernel = Backprop(p, 20)  # buffers larger than the batch
    digit_loss, hits, other_loss = kernel.gradient(x, t, 4)
    total = _loss64({k: v.astype(np.float64) for k, v in p.items()}, x, t, 4) * 12
    assert digit_loss + other_loss == pytest.approx(total, rel=1e-5)
    only_digits = _loss64({k: v.astype(np.float64) for k, v in p.items()}, x[:8], t, 0) * 8
    assert digit_loss == pytest.approx(only_digits, rel=1e-5)
    assert hits == int(np.sum(logits(p, x[:8] * 255).argmax(axis=1) == t))


def test_a_smaller_batch_uses_the_front_of_the_buffers() -> None:
    p, x, t = _case(10, 0, [6, 5, 10], seed=4)
    big = Backprop(p, 10)
    big.gradient(x, t)
    small = Backprop(p, 4)
    small.gradient(x[:4], t[:4])
    big.gradient(x[:4], t[:4])
    for key in p:
        np.testing.assert_allclose(big.grads[key], small.grads[key], rtol=1e-6, atol=1e-8)


def test_kernel_refuses_parameters_it_would_copy() -> None:
    p, _, _ = _case(3, 0, [4, 5, 10])
    p["W1"] = p["W1"].astype(np.float64)
    with pytest.raises(ValueError, match="C-ordered float32"):
        Backprop(p, 3)


def test_logits_in_chunks_match_one_pass() -> None:
    p, x, _ = _case(25, 0, [6, 5, 10], seed=5)
    whole = logits(p, x * 255, chunk=100)
    np.testing.assert_allclose(logits(p, x * 255, chunk=7), whole, rtol=1e-6)
    assert whole.shape == (25, 10)
    assert whole.dtype == np.float32


def _adam64(p: np.ndarray, grads: list[np.ndarray], lr: float, wd: float) -> np.ndarray:
    p = p.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for step, g in enumerate(grads, 1):
        g = g + wd * p
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        a = lr * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        p = p - a * m / (np.sqrt(v) + 1e-8)
    return p


def _plain64(name: str, p: np.ndarray, grads: list[np.ndarray], lr: float, wd: float) -> np.ndarray:
    p = p.astype(np.float64)
    v = np.zeros_like(p)
    for g in grads:
        g = g + wd * p
        if name == "sgd":
            p = p - lr * g
        else:
            v = 0.9 * v - lr * g
            p = p + v
    return p


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_in_place_optimizers_follow_their_formulas(name: str, wd: float) -> None:
    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (4, 3)).astype(np.float32)
    grads = [rng.normal(0, 1, (4, 3)).astype(np.float32) for _ in range(5)]
    opt = OPTIMIZERS[name](0.01, wd)
    params = {"W1": w.copy()}
    for g in grads:
        opt.update(params, {"W1": g})
    want = _adam64(w, grads, 0.01, wd) if name == "adam" else _plain64(name, w, grads, 0.01, wd)
    np.testing.assert_allclose(params["W1"], want, rtol=1e-5, atol=1e-6)
    assert params["W1"].dtype == np.float32
