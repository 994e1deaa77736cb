"""Accuracy of a weights file on an MNIST split, with metrics and optional pictures."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from mnist_infer import report
from mnist_infer.dataset import load_arrays
from mnist_infer.network import Network
from mnist_infer.novelty import Rule, rule_for_weights
from mnist_infer.shipped import weights_path
from mnist_infer.weights import read_weights

if TYPE_CHECKING:
    from numpy.typing import NDArray


class Evaluation(NamedTuple):
    """Predictions for a split and how long the forward pass took."""

    images: NDArray[np.uint8]
    labels: NDArray[np.uint8]
    preds: NDArray[np.intp]
    confidences: NDArray[np.float32]
    seconds: float
    batch_size: int
    weights_path: Path
    weights_sha256: str
    is_digit: NDArray[np.bool_] | None = None  # the not-a-digit rule's verdicts
    rule: Rule | None = None
    rule_problem: str | None = None  # why the weights' metadata (and rule) was not used

    @property
    def correct(self) -> int:
        """How many predictions equal the label."""
        return int(np.count_nonzero(self.preds == self.labels))

    @property
    def accuracy(self) -> float:
        """Share of correct predictions (0.0 for no images)."""
        return self.correct / len(self.labels) if len(self.labels) else 0.0

    def accuracy_line(self) -> str:
        """`Accuracy: 0.9352 (9352/10000)`."""
        return f"Accuracy: {self.accuracy:.4f} ({self.correct}/{len(self.labels)})"

    def summary(self) -> dict[str, Any]:
        """All results as JSON-serialisable values."""
        return report.summary(
            self.labels,
            self.preds,
            batch_size=self.batch_size,
            seconds=self.seconds,
            weights_path=self.weights_path,
            weights_sha256=self.weights_sha256,
            confidences=self.confidences,
            is_digit=self.is_digit,
            rule=self.rule,
        )

    def write_pictures(self, folder: str | os.PathLike[str]) -> list[Path]:
        """confusion.png and mistakes.png in folder; returns their paths."""
        d = Path(folder)
        cm = report.confusion_matrix(self.labels, self.preds)
        paths = [d / "confusion.png", d / "mistakes.png"]
        report.write_confusion_png(cm, paths[0])
        report.write_mistakes_png(self.images, self.labels, self.preds, self.confidences, paths[1])
        return paths


def evaluate(
    weights: str | os.PathLike[str] | None = None,
    split: str = "test",
    *,
    batch_size: int = 100,
    limit: int | None = None,
    cache_dir: Path | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool = False,
    quiet: bool | None = None,
) -> Evaluation:
    """Classify a split (its first `limit` images) with the weights, batch by batch.

    Unless quiet (default: not progress), a first-use download says so on standard error.
    """
    path = weights_path(weights)
    params, sha = read_weights(path)
    net = Network(params, copy=False)  # freshly read: no one else holds them
    rule, problem = rule_for_weights(path, sha)
    quiet = not progress if quiet is None else quiet
    images, labels = load_arrays(split, cache_dir, mirrors=mirrors, quiet=quiet)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), unit="img", desc=f"evaluate {split}", leave=False)
    try:
        start = time.perf_counter()
        energies = np.empty(len(images), np.float32) if rule.score == "energy" else None
        preds, conf = net.classify(
            images, batch_size, on_batch=bar.update if bar else None, energies=energies
        )
        seconds = time.perf_counter() - start
    finally:
        if bar is not None:
            bar.close()
    is_digit = rule.accepts(conf if energies is None else energies)
    return Evaluation(
        images, labels, preds, conf, seconds, batch_size, path, sha, is_digit, rule, problem
    )
