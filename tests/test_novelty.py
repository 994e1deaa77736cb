"""The not-a-digit rule: scores, threshold fitting, metadata round trip."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_infer.functions import softmax
from mnist_infer.novelty import (
    DEFAULT_RULE,
    METADATA_KEY,
    Rule,
    auroc,
    energy,
    fit_threshold,
    max_prob,
    rule_from_metadata,
)


def test_scores_match_reference() -> None:
    a = np.random.default_rng(0).normal(0, 5, (50, 10))
    np.testing.assert_allclose(max_prob(a), softmax(a).max(axis=1))
    np.testing.assert_allclose(energy(a), np.log(np.exp(a).sum(axis=1)))


def test_energy_does_not_overflow() -> None:
    a = np.array([[1000.0, 999.0, -1000.0]])
    assert np.isfinite(energy(a)).all()
    assert energy(a)[0] == pytest.approx(1000 + np.log1p(np.exp(-1.0)))


def test_fit_threshold_rejects_at_most_the_share() -> None:
    s = np.random.default_rng(1).random(2000)
    t = fit_threshold(s, 0.01)
    assert (s < t).mean() <= 0.01
    assert (s < t).mean() >= 0.009


def test_auroc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(2)
    d = rng.integers(0, 20, 60).astype(float)
    o = rng.integers(0, 15, 40).astype(float)
    pairs = (d[:, None] > o[None, :]).mean() + 0.5 * (d[:, None] == o[None, :]).mean()
    assert auroc(d, o) == pytest.approx(pairs)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (None, DEFAULT_RULE),
        ({}, DEFAULT_RULE),
        ({METADATA_KEY: "x"}, DEFAULT_RULE),
        ({METADATA_KEY: {"score": "nope", "threshold": 1}}, DEFAULT_RULE),
        ({METADATA_KEY: {"score": "energy", "threshold": "nan"}}, DEFAULT_RULE),
        ({METADATA_KEY: {"score": "energy"}}, DEFAULT_RULE),
    ],
)
def test_malformed_metadata_falls_back(meta: dict | None, expected: Rule) -> None:
    assert rule_from_metadata(meta) is expected


def test_rule_round_trips_through_metadata() -> None:
    r = Rule("energy", 7.5)
    back = rule_from_metadata({METADATA_KEY: r.to_metadata(digits_rejected=0.004)})
    assert (back.score, back.threshold, back.source) == ("energy", 7.5, "weights")
    logits = np.array([[8.0, 0, 0], [1.0, 1.0, 1.0]])
    assert back.is_digit(logits).tolist() == [True, False]
