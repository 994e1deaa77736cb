"""Fitting the not-a-digit rule of freshly trained weights on validation data.

The digits are the held-out validation split, as they are and with the ink augmentation
(thick and thin strokes, slant, tiny scans), so that harder real digits count; the
non-digits are generated with a seed of their own, the digit-based kinds cut from the
validation digits. Both scores of novelty.py are measured; the one with the larger AUROC
is kept, with the threshold that rejects MAX_DIGIT_REJECT of the validation digits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_infer.backprop import logits
from mnist_infer.novelty import SCORES, Rule, auroc, fit_threshold

if TYPE_CHECKING:
    from numpy.typing import NDArray

MAX_DIGIT_REJECT = 0.0075  # of the validation digits, plain and augmented together


def harder_digits(images: NDArray[np.uint8], seed: int) -> NDArray[np.float32]:
    """The digits with training's ink augmentation (values 0..255)."""
    from mnist_infer.augment import augment, low_resolution, stroke_width

    rng = np.random.default_rng([seed, 6])
    x = augment(images, rng, rotate=12.0, scale=0.1, shear=0.35)
    return low_resolution(stroke_width(x, rng), rng)


def non_digits(images: NDArray[np.uint8], seed: int) -> NDArray[np.float32]:
    """As many generated non-digits as images (values 0..255), cut from those digits too."""
    from mnist_infer.outliers import generate

    rng = np.random.default_rng([seed, 5])
    return generate(len(images), rng, images) * np.float32(255)


def fit_rule(
    params: dict[str, NDArray[np.float32]],
    x_val: NDArray[np.uint8],
    seed: int,
    max_digit_reject: float = MAX_DIGIT_REJECT,
) -> dict[str, Any]:
    """The metadata entry of the rule for these weights, with its measured rates."""
    plain = logits(params, x_val)
    hard = logits(params, harder_digits(x_val, seed))
    other = logits(params, non_digits(x_val, seed))
    found: dict[str, float] = {}
    for name in SCORES:
        probe = Rule(name, 0.0)
        digits = np.concatenate([probe.scores(plain), probe.scores(hard)])
        found[name] = auroc(digits, probe.scores(other))
    best = max(SCORES, key=lambda k: found[k])
    probe = Rule(best, 0.0)
    threshold = fit_threshold(
        np.concatenate([probe.scores(plain), probe.scores(hard)]), max_digit_reject
    )
    rule = Rule(best, threshold)

    def rate(z: NDArray[np.float32]) -> float:
        return round(float(np.mean(~rule.is_digit(z))), 6)

    return rule.to_metadata(
        val_digits_rejected=rate(plain),
        val_augmented_digits_rejected=rate(hard),
        val_non_digits_caught=rate(other),
        val_digits=len(plain),
        val_non_digits=len(other),
        **{f"auroc_{k}": round(v, 6) for k, v in found.items()},
    )
