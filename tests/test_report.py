"""Metrics, text summary and PNG pictures of mnist_infer.report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_infer import report
from mnist_infer.errors import MnistInferError, UsageError


def _reference_cm(labels: np.ndarray, preds: np.ndarray, n: int) -> np.ndarray:
    cm = [[0] * n for _ in range(n)]
    for t, p in zip(labels.tolist(), preds.tolist(), strict=True):
        cm[t][p] += 1
    return np.array(cm)


def _labels_preds(n: int, correct: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random labels; predictions right for the first `correct`, wrong after."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    preds = labels.copy()
    preds[correct:] = (labels[correct:] + rng.integers(1, 10, n - correct)) % 10
    return labels, preds


# --- confusion_matrix ------------------------------------------------------------


@pytest.mark.parametrize(("size", "n_classes"), [(0, 10), (1, 10), (57, 10), (5000, 10), (300, 3)])
def test_confusion_matrix_matches_double_loop(size: int, n_classes: int) -> None:
    rng = np.random.default_rng(size)
    labels = rng.integers(0, n_classes, size).astype(np.uint8)
    preds = rng.integers(0, n_classes, size)
    cm = report.confusion_matrix(labels, preds, n_classes)
    assert cm.dtype == np.int64
    assert cm.shape == (n_classes, n_classes)
    np.testing.assert_array_equal(cm, _reference_cm(labels, preds, n_classes))


def test_confusion_matrix_rows_are_true_labels() -> None:
    cm = report.confusion_matrix([1, 1, 2], [3, 3, 2])
    assert cm[1, 3] == 2
    assert cm[3, 1] == 0
    assert cm[2, 2] == 1


@pytest.mark.parametrize(
    ("labels", "preds", "message"),
    [
        ([1, 2], [1], "labels and predictions differ in length: 2 labels, 1 predictions"),
        ([1, 10], [1, 2], "labels must lie in 0..9, found 1..10"),
        ([1, 2], [-1, 2], "predictions must lie in 0..9, found -1..2"),
        ([1.0, 2.0], [1, 2], "labels must be integers, found dtype float64"),
    ],
)
def test_confusion_matrix_rejects_bad_input(labels: list, preds: list, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        report.confusion_matrix(labels, preds)
    assert str(exc.value) == message


# --- per_class -------------------------------------------------------------------


def test_per_class_hand_checked_with_empty_classes() -> None:
    # Class 2 is never predicted; class 3 never occurs and is never predicted.
    cm = np.array([[2, 1, 0, 0], [0, 3, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        pc = report.per_class(cm)
    # Undefined ratios are NaN: nothing predicted as 2 or 3, no 3 in the labels.
    np.testing.assert_allclose(pc["precision"], [2 / 3, 3 / 4, np.nan, np.nan])
    np.testing.assert_allclose(pc["recall"], [2 / 3, 1, 0, np.nan])
    np.testing.assert_allclose(pc["f1"], [2 / 3, 6 / 7, 0, np.nan])
    np.testing.assert_array_equal(pc["support"], [3, 3, 1, 0])


# --- summary and format_summary ----------------------------------------------------


def _summary(n: int = 10000, correct: int = 9352) -> dict:
    labels, preds = _labels_preds(n, correct)
    return report.summary(
        labels,
        preds,
        batch_size=100,
        seconds=0.25,
        weights_path=Path("w/sample_weight.pkl"),
        weights_sha256="ab" * 32,
    )


def test_calibration_error_by_hand() -> None:
    # bin [0.8, 0.867): confidences 0.85, 0.85, right 1 of 2 -> |0.5 - 0.85| * 2/4
    # bin [0.933, 1]: confidences 0.95, 1.0, both right -> |1 - 0.975| * 2/4
    conf = [0.85, 0.85, 0.95, 1.0]
    hit = [True, False, True, True]
    assert report.calibration_error(conf, hit) == pytest.approx(0.35 * 0.5 + 0.025 * 0.5)
    assert report.calibration_error([0.3, 0.3, 0.3], [True, False, False], bins=10) == (
        pytest.approx(1 / 3 - 0.3)
    )
    assert report.calibration_error([], []) is None


def test_summary_with_confidences_has_the_calibration_error() -> None:
    labels, preds = _labels_preds(200, 150)
    conf = np.full(200, 0.9)
    s = report.summary(
        labels,
        preds,
        batch_size=1,
        seconds=1.0,
        weights_path="w",
        weights_sha256="",
        confidences=conf,
    )
    assert s["ece"] == pytest.approx(0.15)
    assert s["ece_bins"] == report.ECE_BINS


def test_summary_is_plain_json_with_exact_fields() -> None:
    labels, preds = _labels_preds(200, 150)
    s = _summary(200, 150)
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert set(s) == {
        "accuracy",
        "correct",
        "total",
        "per_class",
        "confusion_matrix",
        "batch_size",
        "seconds",
        "images_per_second",
        "weights",
    }
    assert (s["correct"], s["total"], s["accuracy"]) == (150, 200, 0.75)
    assert s["images_per_second"] == pytest.approx(200 / 0.25)
    assert s["weights"] == {"path": str(Path("w/sample_weight.pkl")), "sha256": "ab" * 32}
    assert s["confusion_matrix"] == report.confusion_matrix(labels, preds).tolist()
    pc = report.per_class(report.confusion_matrix(labels, preds))
    assert [r["digit"] for r in s["per_class"]] == list(range(10))
    for key in ("precision", "recall", "f1", "support"):
        assert [r[key] for r in s["per_class"]] == pc[key].tolist()
        assert all(type(r[key]) in (int, float) for r in s["per_class"])


def test_summary_without_time_has_no_rate() -> None:
    s = report.summary([1], [1], batch_size=1, seconds=0.0, weights_path="w", weights_sha256="x")
    assert s["images_per_second"] is None
    assert report.format_summary(s).splitlines()[0] == "Accuracy: 1.0000 (1/1)"


@pytest.mark.parametrize(
    ("n", "correct", "first"),
    [
        (10000, 9352, "Accuracy: 0.9352 (9352/10000)"),
        (3, 2, "Accuracy: 0.6667 (2/3)"),
        (60000, 0, "Accuracy: 0.0000 (0/60000)"),
    ],
)
def test_format_summary_first_line(n: int, correct: int, first: str) -> None:
    assert report.format_summary(_summary(n, correct)).splitlines()[0] == first


def test_format_summary_fits_80_columns_and_shows_the_matrix() -> None:
    s = _summary(60000, 51000)
    lines = report.format_summary(s).splitlines()
    assert max(len(line) for line in lines) <= 80
    head = next(i for i, line in enumerate(lines) if line.startswith("true\\pred"))
    assert lines[head].split()[1:] == [str(d) for d in range(10)]
    rows = [[int(v) for v in line.split()] for line in lines[head + 1 : head + 11]]
    assert rows == [[d, *r] for d, r in enumerate(s["confusion_matrix"])]
    support = next(line for line in lines if line.startswith("support"))
    assert support.split()[1:] == [str(r["support"]) for r in s["per_class"]]


# --- confusion picture ---------------------------------------------------------------


def _lum(px: tuple[int, int, int]) -> float:
    return 0.2126 * px[0] + 0.7152 * px[1] + 0.0722 * px[2]


def test_confusion_png_shades_cells_by_row_share(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    cm = rng.integers(0, 40, (10, 10))
    cm[3] = 0
    cm[3, 3] = 5000  # a dominant class, all correct: the darkest cell
    cm[5, 2] = 1  # a tiny share in a big row: nearly white, dark text
    cm[5, 5] = 4000
    path = tmp_path / "new" / "cm.png"
    report.write_confusion_png(cm, path, cell=48)
    assert sorted(p.name for p in path.parent.iterdir()) == ["cm.png"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask

    img = Image.open(path)
    left, top, right, bottom = report._CM_MARGINS
    assert img.format == "PNG"
    assert img.mode == "RGB"
    assert img.size == (left + 480 + right, top + 480 + bottom)
    px = img.load()
    assert px is not None

    def corner(i: int, j: int) -> float:  # a cell pixel away from the centred count
        return _lum(px[left + j * 48 + 3, top + i * 48 + 3])

    lum = np.array([[corner(i, j) for j in range(10)] for i in range(10)])
    share = cm / cm.sum(axis=1, keepdims=True)
    assert np.unravel_index(lum.argmin(), lum.shape) == (3, 3)
    assert lum[3, 0] == pytest.approx(255)
    order = np.argsort(share, axis=None, kind="stable")
    assert np.all(np.diff(lum.ravel()[order]) <= 0)  # darker as the share grows
    strictly = np.diff(share.ravel()[order]) > 0.02
    assert np.all(np.diff(lum.ravel()[order])[strictly] < 0)

    def text_lums(i: int, j: int) -> list[float]:
        x, y = left + j * 48, top + i * 48
        return [_lum(px[x + a, y + b]) for a in range(10, 38) for b in range(16, 32)]

    assert max(text_lums(3, 3)) > 200  # light count on the dark cell
    assert min(text_lums(5, 2)) < 100  # dark count on the near-white cell


# --- mistakes picture ------------------------------------------------------------------


def _mistake_inputs(n: int, wrong: int) -> tuple[np.ndarray, ...]:
    labels, preds = _labels_preds(n, n - wrong, seed=n)
    images = np.full((n, 784), 255, dtype=np.uint8)  # all ink: each tile is a black square
    conf = np.linspace(0.3, 1.0, n, dtype=np.float32)
    return images, labels, preds, conf


@pytest.mark.parametrize(
    ("n", "wrong", "max_count", "shown"),
    [(20, 1, 100, 1), (30, 7, 100, 7), (50, 10, 100, 10), (80, 23, 100, 23), (300, 150, 100, 100)],
)
def test_mistakes_png_has_one_tile_per_shown_mistake(
    tmp_path: Path, n: int, wrong: int, max_count: int, shown: int
) -> None:
    images, labels, preds, conf = _mistake_inputs(n, wrong)
    path = tmp_path / "m.png"
    report.write_mistakes_png(images, labels, preds, conf, path, max_count=max_count)
    img = Image.open(path)
    assert img.mode == "RGB"
    black = np.all(np.asarray(img) == 0, axis=2)  # captions are dark grey, never pure black
    side = 28 * 3
    assert black.sum() == shown * side * side
    first_row = black[np.flatnonzero(black.any(axis=1))[0]]
    starts = np.flatnonzero(np.diff(first_row.astype(np.int8)) == 1)
    assert len(starts) == min(shown, 10)
    assert black.any(axis=1).sum() == side * -(-shown // 10)


def test_mistakes_png_upscales_digits_crisply(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    digit = rng.integers(0, 255, (28, 28), dtype=np.uint8)  # 255 never occurs ...
    digit[0, 0] = 255  # ... except here, so the tile's corner is the only pure black
    images = np.stack([np.zeros((28, 28), np.uint8), digit])
    path = tmp_path / "m.png"
    report.write_mistakes_png(images, [1, 4], [1, 9], [0.9, 0.97], path)
    a = np.asarray(Image.open(path))
    ys, xs = np.nonzero(np.all(a == 0, axis=2))
    y, x = ys.min(), xs.min()
    assert (ys.max() - y, xs.max() - x) == (2, 2)
    expected = np.kron(255 - digit, np.ones((3, 3), np.uint8))
    for c in range(3):
        np.testing.assert_array_equal(a[y : y + 84, x : x + 84, c], expected)


def test_mistakes_png_without_mistakes(tmp_path: Path) -> None:
    images, labels, _, conf = _mistake_inputs(40, 0)
    path = tmp_path / "sub" / "m.png"
    report.write_mistakes_png(images, labels, labels, conf, path)
    a = np.asarray(Image.open(path).convert("L"))
    assert not np.any(a == 0)  # no digit tiles
    assert a.shape[1] > a.shape[0]
    assert a.min() < 100  # but a line of text


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 783), "images must have shape (n, 784) or (n, 28, 28), found (3, 783)"),
        ((3, 28, 27), "images must have shape (n, 784) or (n, 28, 28), found (3, 28, 27)"),
        ((2, 784), "images, labels, predictions and confidences differ in length: 2, 3, 3, 3"),
    ],
)
def test_mistakes_png_rejects_bad_shapes(tmp_path: Path, shape: tuple, message: str) -> None:
    images = np.zeros(shape, np.uint8)
    with pytest.raises(UsageError) as exc:
        report.write_mistakes_png(images, [1, 2, 3], [1, 2, 4], [0.5] * 3, tmp_path / "m.png")
    assert str(exc.value) == message
    assert not list(tmp_path.iterdir())


# --- writing -----------------------------------------------------------------------------


def test_pictures_replace_existing_files_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "cm.png"
    path.write_bytes(b"old")
    report.write_confusion_png(np.eye(10, dtype=np.int64), path)
    assert Image.open(path).format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_unwritable_picture_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MnistInferError, match=r"^cannot write .*file.sub.cm\.png: "):
        report.write_confusion_png(np.eye(10, dtype=np.int64), blocker / "sub" / "cm.png")


def test_import_does_not_load_pillow() -> None:
    code = "import sys, mnist_infer.report; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
