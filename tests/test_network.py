from __future__ import annotations

import itertools
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from textbook import predict as textbook_predict
from textbook import real_test_set, reference_labels, textbook_labels

from mnist_infer.errors import UsageError, WeightsError
from mnist_infer.network import Network, _blas
from mnist_infer.novelty import energy
from mnist_infer.weights import load_weights

BATCH_SIZES = [1, 7, 100, 1000, 10000, 20000]


def random_params(
    sizes: tuple[int, ...] = (784, 50, 100, 10), scale: float = 0.1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random float32 weights for a chain of layer sizes."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes), 1):
        params[f"W{i}"] = (rng.normal(size=(a, b)) * scale).astype(np.float32)
        params[f"b{i}"] = (rng.normal(size=b) * scale).astype(np.float32)
    return params


def random_images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


@pytest.fixture(scope="module")
def net() -> Network:
    return Network(random_params())


def test_predict_matches_textbook_code(net: Network) -> None:
    params = random_params()
    x = random_images(64).astype(np.float32) / 255.0
    y = net.predict(x)
    assert y.dtype == np.float32
    assert y.shape == (64, 10)
    np.testing.assert_allclose(y, textbook_predict(params, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_batched_equals_per_sample(net: Network) -> None:
    x = random_images(23).astype(np.float32) / 255.0
    batched = net.predict(x)
    singles = np.concatenate([net.predict(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(batched, singles, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(batched.argmax(axis=1), singles.argmax(axis=1))


@pytest.mark.parametrize("batch_size", [1, 3, 16, 50, 51, 1000])
def test_classify_equals_predict_for_any_batch_size(net: Network, batch_size: int) -> None:
    images = random_images(50)
    y = net.predict(images.astype(np.float32) / 255.0)
    labels, conf = net.classify(images, batch_size)
    assert labels.shape == conf.shape == (50,)
    assert conf.dtype == np.float32
    np.testing.assert_array_equal(labels, y.argmax(axis=1))
    np.testing.assert_allclose(conf, y.max(axis=1), rtol=1e-5)


@pytest.mark.parametrize(("batch_size", "workers"), [(7, 1), (50, 1), (10, 2)])
def test_classify_gives_the_energy_score(net: Network, batch_size: int, workers: int) -> None:
    images = random_images(50)
    energies = np.empty(50, np.float32)
    labels, _ = net.classify(images, batch_size, workers=workers, energies=energies)
    want = energy(net.logits(images / np.float32(255)))
    np.testing.assert_allclose(energies, want, rtol=1e-5)
    np.testing.assert_array_equal(labels, net.classify(images, batch_size)[0])


def test_classify_refuses_energies_of_another_length(net: Network) -> None:
    with pytest.raises(UsageError) as e:
        net.classify(random_images(5), energies=np.empty(4, np.float32))
    assert str(e.value) == "energies must have shape (5,), found (4,)"


def test_activations_end_in_logits_when_asked(net: Network) -> None:
    x = random_images(6) / np.float32(255)
    *hidden, logits = net.activations(x, logits=True)
    *same, probs = net.activations(x)
    np.testing.assert_allclose(logits, net.logits(x), rtol=1e-6)
    np.testing.assert_allclose(probs, net.predict(x), rtol=1e-6)
    for h, g in zip(hidden, same, strict=True):
        np.testing.assert_array_equal(h, g)


def test_classify_reports_each_batch(net: Network) -> None:
    seen: list[int] = []
    net.classify(random_images(25), 10, on_batch=seen.append)
    assert seen == [10, 10, 5]


def test_classify_slices_big_batches(net: Network) -> None:
    images = random_images(2500)
    seen: list[int] = []
    labels, _ = net.classify(images, 2500, seen.append, workers=1)
    assert seen == [1000, 1000, 500]
    np.testing.assert_array_equal(labels, net.classify(images, 100, workers=1)[0])


@pytest.mark.parametrize(("n", "batch_size"), [(1000, 100), (1050, 100), (999, 7), (700, 1000)])
@pytest.mark.parametrize("workers", [2, 3])
def test_classify_in_threads_equals_one_thread(
    net: Network, n: int, batch_size: int, workers: int
) -> None:
    images = random_images(n)
    one, one_conf = net.classify(images, batch_size, workers=1)
    seen: list[int] = []
    many, many_conf = net.classify(images, batch_size, seen.append, workers=workers)
    np.testing.assert_array_equal(many, one)
    np.testing.assert_allclose(many_conf, one_conf, rtol=1e-6)
    batches = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    if len(batches) >= workers:  # the same batches, just spread over the threads
        assert sorted(seen) == sorted(batches)
    else:  # one batch, shared by the threads
        assert sum(seen) == n
        assert len(seen) == workers


def test_error_in_a_thread_reaches_the_caller(net: Network) -> None:
    calls: list[int] = []

    def fail(count: int) -> None:
        calls.append(count)
        if len(calls) == 3:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        net.classify(random_images(1000), 100, fail, workers=2)


@pytest.fixture
def blas() -> tuple:
    """OpenBLAS's (get, set) thread-count functions, or skip."""
    if not _blas.limit():
        pytest.skip("numpy does not use OpenBLAS here")
    _blas.restore()
    assert _blas._funcs is not None
    return _blas._funcs


def test_classify_leaves_blas_threads_as_they_were(net: Network, blas: tuple) -> None:
    get, put = blas
    before = get()
    for threads in {1, 2, before}:
        put(threads)
        net.classify(random_images(1000), 100, workers=2)
        assert get() == threads
    put(before)


def _threads_used(net: Network, expected: int) -> set[int]:
    """Threads that ran batches; each waits at its first batch until `expected` have come."""
    barrier = threading.Barrier(expected, timeout=10)
    seen: set[int] = set()

    def arrive(count: int) -> None:
        me = threading.get_ident()
        if me not in seen:
            seen.add(me)
            barrier.wait()

    net.classify(random_images(2000), 100, arrive)
    return seen


def test_default_threads_follow_blas(net: Network, blas: tuple) -> None:
    """Own threads when BLAS runs single-threaded, else one thread and BLAS's parallelism."""
    get, put = blas
    before = get()
    cpus = len(os.sched_getaffinity(0))
    try:
        put(1)
        assert len(_threads_used(net, cpus)) == cpus
        put(2)
        assert _threads_used(net, 1) == {threading.get_ident()}
    finally:
        put(before)


def test_classify_no_images(net: Network) -> None:
    labels, conf = net.classify(np.zeros((0, 784), dtype=np.uint8))
    assert labels.shape == conf.shape == (0,)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 784), dtype=np.float32), "found float32 (2, 784)"),
        (np.zeros((2, 783), dtype=np.uint8), "found uint8 (2, 783)"),
        (np.zeros(784, dtype=np.uint8), "found uint8 (784,)"),
    ],
)
def test_classify_rejects_wrong_input(net: Network, images: np.ndarray, message: str) -> None:
    with pytest.raises(UsageError, match=r"classify needs uint8 images of shape \(n, 784\)") as e:
        net.classify(images)
    assert str(e.value).endswith(message)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_classify_rejects_bad_batch_size(net: Network, batch_size: int) -> None:
    with pytest.raises(UsageError, match=f"batch size must be at least 1, found {batch_size}"):
        net.classify(random_images(3), batch_size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_activations_stay_finite_without_warnings(dtype: type) -> None:
    params = random_params(scale=1000.0)
    net = Network(params, dtype=dtype)
    images = random_images(40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = net.predict(images / 255.0)
        labels, conf = net.classify(images, 16)
    assert y.dtype == dtype
    assert np.all(np.isfinite(y))
    assert np.all(np.isfinite(conf))
    np.testing.assert_array_equal(labels, y.argmax(axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_largest_accepted_weights_stay_finite_without_warnings(dtype: type) -> None:
    # Each unit's sum of |weights| plus |bias| is 90% of the dtype's largest value: just
    # inside what check_params accepts, so every product and sum is near overflow.
    rng = np.random.default_rng(2)
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise((784, 50, 100, 10)), 1):
        size = 0.9 * float(np.finfo(dtype).max) / (a + 1)
        params[f"W{i}"] = (rng.choice([-size, size], (a, b))).astype(dtype)
        params[f"b{i}"] = (rng.choice([-size, size], b)).astype(dtype)
    net = Network(params, dtype=dtype)
    images = random_images(40)
    images[0] = 255  # every pixel at its largest
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = net.predict(images / 255.0)
        labels, conf = net.classify(images, 16)
    # Saturated units make exact ties between digits, so labels may differ between the two.
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-6)
    assert np.all((conf > 0) & (conf <= 1))
    assert np.all((labels >= 0) & (labels < 10))


@pytest.mark.parametrize("sizes", [(784, 10), (784, 30, 10), (784, 30, 20, 15, 10)])
def test_any_chain_of_layers(sizes: tuple[int, ...]) -> None:
    params = random_params(sizes)
    net = Network(params)
    assert net.sizes == list(sizes)
    images = random_images(9)
    x = images.astype(np.float32) / 255.0
    h = x
    last = len(sizes) - 1
    for i in range(1, last):
        h = 1 / (1 + np.exp(-(h @ params[f"W{i}"] + params[f"b{i}"])))
    a = h @ params[f"W{last}"] + params[f"b{last}"]
    want = np.exp(a - a.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.predict(x), want, rtol=1e-5, atol=1e-7)
    labels, conf = net.classify(images)
    np.testing.assert_array_equal(labels, want.argmax(axis=1))
    np.testing.assert_allclose(conf, want.max(axis=1), rtol=1e-5)


def test_params_are_live_copies() -> None:
    params = random_params()
    net = Network(params)
    assert sorted(net.params) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    net.params["b3"][:] = 0
    net.params["b3"][4] = 1000
    assert params["b3"][4] != 1000  # the caller's arrays are not touched
    np.testing.assert_array_equal(net.classify(random_images(5))[0], 4)


def test_loss_and_gradient_shapes() -> None:
    net = Network(random_params(), dtype=np.float64)
    x = random_images(8) / 255.0
    t = np.arange(8) % 10
    loss = net.loss(x, t)
    assert loss == pytest.approx(-np.mean(np.log(net.predict(x)[np.arange(8), t])))
    grads = net.gradient(x, np.eye(10)[t])
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in net.params.items()}
    assert net.accuracy(x, t) == np.mean(net.predict(x).argmax(axis=1) == t)


def test_inconsistent_params_are_rejected() -> None:
    params = random_params()
    params["W2"] = params["W2"][:40]
    with pytest.raises(WeightsError, match=r"W2 has shape \(40, 100\), expected \(50, \*\)"):
        Network(params)


# --- the textbook's weights on the real test set ----------------------------------


@pytest.fixture(scope="module")
def textbook_net(reference_weights: Path) -> Network:
    return Network(load_weights(reference_weights))


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_textbook_weights_accuracy_and_labels(
    textbook_net: Network, real_mnist_dir: Path, reference_weights: Path, batch_size: int
) -> None:
    images, labels = real_test_set(real_mnist_dir)
    want = reference_labels(real_mnist_dir, reference_weights)
    preds, _ = textbook_net.classify(images, batch_size)
    assert np.count_nonzero(preds == labels) / len(labels) == 0.9352
    np.testing.assert_array_equal(preds, want)


def test_textbook_weights_predict_matches_textbook(
    textbook_net: Network, real_mnist_dir: Path, reference_weights: Path
) -> None:
    images = real_test_set(real_mnist_dir)[0][:2000]
    params = load_weights(reference_weights)
    y = textbook_net.predict(images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(y, textbook_predict(params, images / np.float32(255.0)), atol=1e-5)
    np.testing.assert_array_equal(y.argmax(axis=1), textbook_labels(params, images))
