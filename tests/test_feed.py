"""Training batches: what they hold, and the same from the worker process as made inline."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_infer.feed import Feed, Recipe, make_batch, permutation


def _data(n: int = 130) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 784)).astype(np.uint8)
    images[:, :100] = 0  # some black rows, as digits have
    labels = rng.integers(0, 10, n).astype(np.uint8)
    tr = np.arange(10, n)  # the first ten held out
    return images, labels, tr


@pytest.mark.parametrize(
    ("outliers", "per_batch"), [(0.0, 0), (0.5, 10), (0.33, 7), (1.0, 20), (2.0, 40)]
)
def test_non_digits_per_batch(outliers: float, per_batch: int) -> None:
    r = Recipe(seed=0, batch_size=20, outliers=outliers)
    assert (r.per_batch, r.rows, r.busy) == (per_batch, 20 + per_batch, per_batch > 0)


def test_plain_batches_are_the_shuffled_images_scaled() -> None:
    images, labels, tr = _data()
    with Feed(Recipe(seed=3, batch_size=32), images, labels, tr) as feed:
        got = [(x.copy(), t.copy(), k) for x, t, k in feed.batches(0, 0)]
    perm = permutation(3, 0, tr)
    assert [len(t) for _, t, _ in got] == [32, 32, 32, 24]  # the last batch is smaller
    order = np.concatenate([t for _, t, _ in got])
    np.testing.assert_array_equal(order, labels[perm])
    x = np.concatenate([x for x, _, _ in got])
    np.testing.assert_allclose(x, images[perm] / 255, rtol=1e-6)
    assert all(k == 0 for _, _, k in got)
    assert set(perm) == set(tr)


def test_epochs_are_shuffled_differently() -> None:
    tr = np.arange(50)
    assert not np.array_equal(permutation(0, 0, tr), permutation(0, 1, tr))
    np.testing.assert_array_equal(permutation(0, 1, tr), permutation(0, 1, tr))


@pytest.mark.parametrize(
    ("recipe", "workers"),
    [
        (Recipe(seed=1, batch_size=25, augment=True), 2),
        (Recipe(seed=1, batch_size=25, ink_augment=True, outliers=0.4), 1),
        (Recipe(seed=2, batch_size=25, outliers=1.0), 3),
    ],
)
def test_the_workers_make_the_batches_made_inline(recipe: Recipe, workers: int) -> None:
    images, labels, tr = _data()
    pool = images[tr]
    perm0, perm1 = permutation(recipe.seed, 0, tr), permutation(recipe.seed, 1, tr)
    with Feed(recipe, images, labels, tr, workers) as feed:
        first = [(x.copy(), t.copy(), k) for x, t, k in feed.batches(0, 2)]
        second = [(x.copy(), t.copy(), k) for x, t, k in feed.batches(1, 0)]
    assert len(first) == feed.per_epoch - 2
    assert len(second) == feed.per_epoch
    for epoch, perm, got, start in ((0, perm0, first, 2), (1, perm1, second, 0)):
        for b, (x, t, k) in enumerate(got, start):
            idx = perm[b * 25 : (b + 1) * 25]
            want = np.empty((recipe.rows, 784), np.float32)
            m = make_batch(recipe, images, pool, idx, epoch, b, want)
            assert k == recipe.per_batch
            assert m == len(idx) + k
            np.testing.assert_array_equal(x, want[:m])
            np.testing.assert_array_equal(t, labels[idx])
            assert x.min() >= 0
            assert x.max() <= 1.0 + 1e-6


def test_a_batch_is_the_same_whichever_batches_came_before() -> None:
    """What --resume relies on: batch b of epoch e depends on nothing else."""
    images, _labels, tr = _data()
    r = Recipe(seed=5, batch_size=25, augment=True, outliers=0.5)
    idx = permutation(5, 3, tr)[50:75]
    a = np.empty((r.rows, 784), np.float32)
    b = np.empty((r.rows, 784), np.float32)
    make_batch(r, images, images[tr], idx, 3, 2, a)
    make_batch(r, images, images[tr], permutation(5, 3, tr)[:25], 3, 0, b)
    make_batch(r, images, images[tr], idx, 3, 2, b)
    np.testing.assert_array_equal(a, b)


def test_a_failing_worker_is_reported() -> None:
    images, labels, tr = _data()
    r = Recipe(seed=0, batch_size=25, outliers=0.5)
    # Digits of the wrong size: the worker cannot cut non-digits from them.
    with (
        Feed(r, images[:, :100].copy(), labels, tr) as feed,
        pytest.raises(RuntimeError, match="the batch worker failed"),
    ):
        next(iter(feed.batches(0, 0)))
