"""Deciding "not a digit" from the network's output logits.

A softmax always names a digit; the rule here says when that name should not be believed.
Each weights file carries its own rule in its metadata (`.pkl.json`, key `not_a_digit`),
fitted on validation digits and generated non-digits when the weights were trained; weights
without one (the book's `sample_weight.pkl`) use DEFAULT_RULE.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

METADATA_KEY = "not_a_digit"
SCORES = ("max_prob", "energy")


def max_prob(logits: NDArray[np.floating]) -> NDArray[np.float64]:
    """Largest softmax probability of each row."""
    a = np.asarray(logits, dtype=np.float64)
    z = a - a.max(axis=-1, keepdims=True)
    return 1 / np.exp(z).sum(axis=-1)


def energy(logits: NDArray[np.floating]) -> NDArray[np.float64]:
    """logsumexp of each row: minus the energy, high for inputs like the training digits."""
    a = np.asarray(logits, dtype=np.float64)
    m = a.max(axis=-1)
    return m + np.log(np.exp(a - m[..., None]).sum(axis=-1))


_SCORE_FNS = {"max_prob": max_prob, "energy": energy}


class Rule:
    """is_digit = score(logits) >= threshold."""

    __slots__ = ("score", "source", "threshold")

    def __init__(self, score: str, threshold: float, source: str = "weights") -> None:
        if score not in _SCORE_FNS:
            raise ValueError(f"unknown score {score!r} (expected one of {', '.join(SCORES)})")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, found {threshold!r}")
        self.score = score
        self.threshold = float(threshold)
        self.source = source  # "weights" (from the metadata) or "default"

    def __repr__(self) -> str:
        return f"Rule({self.score!r}, {self.threshold!r}, source={self.source!r})"

    def scores(self, logits: NDArray[np.floating]) -> NDArray[np.float64]:
        """The rule's score for each row of logits."""
        return _SCORE_FNS[self.score](logits)

    def is_digit(self, logits: NDArray[np.floating]) -> NDArray[np.bool_]:
        """True where the row reads as a digit."""
        return self.accepts(self.scores(logits))

    def accepts(self, scores: NDArray[np.floating]) -> NDArray[np.bool_]:
        """True where a score computed already (e.g. by Network.classify) reads as a digit."""
        return np.asarray(scores) >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        """{"score", "threshold", "source"}, as info, evaluate and serve show the rule."""
        return {"score": self.score, "threshold": self.threshold, "source": self.source}

    def text(self) -> str:
        """E.g. `not a digit when max_prob < 0.5 (the default rule: the weights carry none)`."""
        return rule_text(self.as_dict())

    def to_metadata(self, **measured: float) -> dict[str, Any]:
        """The metadata entry, with any measured rates alongside."""
        return {"score": self.score, "threshold": self.threshold, **measured}


# For weights that carry no rule: a max probability below one half means the network
# spreads its belief over several digits. On MNIST's test digits it flags 3.2% with the
# book's weights, 0.1% with the shipped 784-800-300-10 ones (`mnist-infer evaluate`).
DEFAULT_RULE = Rule("max_prob", 0.5, source="default")


def rule_text(rule: dict[str, Any]) -> str:
    """Rule.text for a rule given as Rule.as_dict gives it (e.g. read back from JSON)."""
    where = "from the weights" if rule["source"] == "weights" else DEFAULT_WHY
    return f"not a digit when {rule['score']} < {rule['threshold']:.6g} ({where})"


DEFAULT_WHY = "the default rule: the weights carry none"


def rule_from_metadata(meta: dict[str, Any] | None) -> Rule:
    """The rule stored with the weights, else DEFAULT_RULE (a malformed entry counts as none)."""
    entry = (meta or {}).get(METADATA_KEY)
    if not isinstance(entry, dict):
        return DEFAULT_RULE
    try:
        return Rule(str(entry["score"]), float(entry["threshold"]))
    except (KeyError, TypeError, ValueError):
        return DEFAULT_RULE


def rule_for_weights(
    path: str | os.PathLike[str], sha256: str | None = None
) -> tuple[Rule, str | None]:
    """The rule stored beside the weights at path (else DEFAULT_RULE) and, when their
    metadata cannot be used, why (see weights.checked_metadata)."""
    from mnist_infer.weights import checked_metadata

    meta, problem = checked_metadata(path, sha256)
    return rule_from_metadata(meta), problem


def fit_threshold(digit_scores: NDArray[np.floating], max_digit_reject: float = 0.005) -> float:
    """The largest threshold that rejects at most max_digit_reject of the given digits."""
    s = np.sort(np.asarray(digit_scores, dtype=np.float64))
    k = math.floor(max_digit_reject * len(s))
    return float(s[min(k, len(s) - 1)])


def auroc(digit_scores: NDArray[np.floating], other_scores: NDArray[np.floating]) -> float:
    """Probability that a random digit scores above a random non-digit (ties count half)."""
    d = np.asarray(digit_scores, dtype=np.float64)
    o = np.asarray(other_scores, dtype=np.float64)
    both = np.concatenate([d, o])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[: len(d)].sum() - len(d) * (len(d) + 1) / 2) / (len(d) * len(o)))
