from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import pin_cache
from PIL import Image
from textbook import predict as textbook_predict
from textbook import real_test_set, reference_labels, textbook_labels

from mnist_infer.cli import cli
from mnist_infer.evaluate import evaluate
from mnist_infer.idx import write_idx
from mnist_infer.network import Network
from mnist_infer.novelty import DEFAULT_RULE, METADATA_KEY, energy, max_prob
from mnist_infer.report import calibration_error, confusion_matrix
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import load_weights, metadata_path

N_TEST, N_TRAIN = 57, 33


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["evaluate", *args])


def accuracy_line(preds: np.ndarray, labels: np.ndarray) -> str:
    correct = int(np.sum(preds == labels))
    return f"Accuracy: {correct / len(labels):.4f} ({correct}/{len(labels)})"


@pytest.fixture
def data(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Small random splits written as IDX files into the test's cache folder."""
    rng = np.random.default_rng(3)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("test", "t10k", N_TEST), ("train", "train", N_TRAIN)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(cache_dir / f"{prefix}-images-idx3-ubyte", images)
        write_idx(cache_dir / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images.reshape(n, 784), labels)
    pin_cache(cache_dir, monkeypatch)
    return out


def expected(weights: Path, images: np.ndarray) -> np.ndarray:
    return textbook_labels(load_weights(weights), images)


@pytest.mark.parametrize("batch_size", ["1", "10", "100"])
def test_human_output(weights: Path, data: dict, batch_size: str) -> None:
    images, labels = data["test"]
    preds = expected(weights, images)
    res = invoke("--weights", str(weights), "--batch-size", batch_size)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == accuracy_line(preds, labels)
    assert f"batch size {batch_size})" in lines[1]
    assert "Confusion matrix (rows: true digit, columns: predicted digit)" in lines
    cm = confusion_matrix(labels, preds)
    rows = [line.split()[1:] for line in lines[-10:]]
    assert rows == [[str(v) for v in row] for row in cm]
    assert res.stderr == ""  # no progress bar when stderr is not a terminal


def test_undefined_ratios_are_shown_as_such(weights: Path, data: dict) -> None:
    # Two images: most digits neither occur nor are predicted, so their ratios are undefined.
    images, labels = data["test"]
    preds = expected(weights, images)[:2]
    res = invoke("--weights", str(weights), "--limit", "2", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["per_class"]
    res = invoke("--weights", str(weights), "--limit", "2")
    table = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines() if line}
    for d, r in enumerate(rows):
        seen, said = d in labels[:2], d in preds
        assert (r["recall"] is None, r["precision"] is None) == (not seen, not said)
        assert (r["f1"] is None) == (not seen and not said)
        for key in ("precision", "recall", "f1"):
            assert table[key][d] == ("-" if r[key] is None else f"{r[key]:.3f}")


def test_quiet(weights: Path, data: dict) -> None:
    images, labels = data["test"]
    res = invoke("--weights", str(weights), "--quiet")
    assert res.exit_code == 0, res.output
    assert res.output == accuracy_line(expected(weights, images), labels) + "\n"


def test_json(weights: Path, data: dict) -> None:
    images, labels = data["test"]
    preds = expected(weights, images)
    res = invoke("--weights", str(weights), "--json", "--batch-size", "8")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    correct = int(np.sum(preds == labels))
    assert s["accuracy"] == correct / N_TEST
    assert (s["correct"], s["total"], s["batch_size"]) == (correct, N_TEST, 8)
    assert s["confusion_matrix"] == confusion_matrix(labels, preds).tolist()
    assert [r["digit"] for r in s["per_class"]] == list(range(10))
    for d, r in enumerate(s["per_class"]):
        hits = np.sum((preds == d) & (labels == d))
        assert r["support"] == np.sum(labels == d)
        for key, count in (("recall", np.sum(labels == d)), ("precision", np.sum(preds == d))):
            assert r[key] == (pytest.approx(hits / count) if count else None)
    assert s["images_per_second"] > 0
    conf = Network(load_weights(weights)).predict(images / 255).max(axis=1)
    assert s["ece"] == pytest.approx(calibration_error(conf, preds == labels), abs=1e-6)
    assert s["ece_bins"] == 15
    assert s["weights"] == {
        "path": str(weights),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }


# --- the not-a-digit rule ----------------------------------------------------------------


def _scores(weights: Path, images: np.ndarray, score: str) -> np.ndarray:
    logits = Network(load_weights(weights)).logits(images / np.float32(255))
    return {"max_prob": max_prob, "energy": energy}[score](logits)


def _rejections(scores: np.ndarray, threshold: float, preds: np.ndarray, labels: np.ndarray):
    ok = scores >= threshold
    correct = int(np.sum(ok & (preds == labels)))
    n = int(ok.sum())
    return len(ok) - n, n, correct


@pytest.mark.parametrize("score", ["max_prob", "energy"])
def test_rejections_by_the_weights_rule(weights: Path, data: dict, score: str) -> None:
    images, labels = data["test"]
    preds = expected(weights, images)
    s = np.sort(_scores(weights, images, score))
    i = len(s) // 3 + int(np.argmax(np.diff(s[len(s) // 3 : 2 * len(s) // 3])))
    threshold = float((s[i] + s[i + 1]) / 2)  # in the widest gap of the middle third
    meta = {METADATA_KEY: {"score": score, "threshold": threshold}}
    metadata_path(weights).write_text(json.dumps(meta))
    rejected, accepted, correct = _rejections(
        _scores(weights, images, score), threshold, preds, labels
    )
    assert 0 < rejected < N_TEST
    res = invoke("--weights", str(weights), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["not_a_digit"] == {
        "rule": {"score": score, "threshold": threshold, "source": "weights"},
        "rejected": rejected,
        "rejected_share": rejected / N_TEST,
        "accepted": accepted,
        "accepted_correct": correct,
        "accepted_accuracy": correct / accepted,
    }
    lines = invoke("--weights", str(weights)).stdout.splitlines()
    assert lines[3:5] == [
        f"Not a digit: {rejected}/{N_TEST} rejected ({rejected / N_TEST:.2%}); accuracy on the"
        f" other {accepted}: {correct / accepted:.4f} ({correct}/{accepted})",
        f"Rule: not a digit when {score} < {threshold:.6g} (from the weights)",
    ]


def test_weights_without_a_rule_use_the_default(weights: Path, data: dict) -> None:
    images, labels = data["test"]
    preds = expected(weights, images)
    scores = _scores(weights, images, DEFAULT_RULE.score)
    rejected, accepted, correct = _rejections(scores, DEFAULT_RULE.threshold, preds, labels)
    s = json.loads(invoke("--weights", str(weights), "--json").stdout)["not_a_digit"]
    assert s["rule"] == DEFAULT_RULE.as_dict()
    assert (s["rejected"], s["accepted"], s["accepted_correct"]) == (rejected, accepted, correct)
    res = invoke("--weights", str(weights))
    assert f"Rule: {DEFAULT_RULE.text()}" in res.stdout.splitlines()


def test_all_rejected(weights: Path, data: dict) -> None:
    metadata_path(weights).write_text(
        json.dumps({METADATA_KEY: {"score": "max_prob", "threshold": 1.5}})
    )
    res = invoke("--weights", str(weights), "--json")
    s = json.loads(res.stdout)["not_a_digit"]
    assert (s["rejected"], s["rejected_share"], s["accepted"]) == (N_TEST, 1.0, 0)
    assert s["accepted_accuracy"] is None
    line = invoke("--weights", str(weights)).stdout.splitlines()[3]
    assert line == f"Not a digit: {N_TEST}/{N_TEST} rejected (100.00%); accuracy on the other 0: -"


def test_metadata_of_other_weights_is_not_used(weights: Path, data: dict) -> None:
    side = metadata_path(weights)
    meta = {"weights_sha256": "0" * 64, METADATA_KEY: {"score": "max_prob", "threshold": 1.5}}
    side.write_text(json.dumps(meta))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    res = invoke("--weights", str(weights), "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["not_a_digit"]["rule"] == DEFAULT_RULE.as_dict()
    assert res.stderr == (
        f"Warning: the metadata in {side} describes another file (SHA-256 000000000000…, this"
        f" file's is {sha[:12]}…); using the default not-a-digit rule\n"
    )
    assert invoke("--weights", str(weights), "--json", "-q").stderr == ""


@pytest.mark.parametrize("limit", [1, 20, N_TEST, 1000])
def test_limit(weights: Path, data: dict, limit: int) -> None:
    images, labels = data["test"]
    n = min(limit, N_TEST)
    res = invoke("--weights", str(weights), "--limit", str(limit), "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["total"] == n
    preds = expected(weights, images[:n])
    assert s["confusion_matrix"] == confusion_matrix(labels[:n], preds).tolist()


def test_train_split(weights: Path, data: dict) -> None:
    images, labels = data["train"]
    res = invoke("--weights", str(weights), "--split", "train", "-q")
    assert res.exit_code == 0, res.output
    assert res.output == accuracy_line(expected(weights, images), labels) + "\n"


def test_default_weights_are_the_shipped_file(data: dict) -> None:
    res = invoke("--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["weights"]["path"] == str(default_weights_path())


def test_report_pictures(weights: Path, data: dict, tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = invoke("--weights", str(weights), "--report", str(out))
    assert res.exit_code == 0, res.output
    for name in ("confusion.png", "mistakes.png"):
        assert f"Wrote {out / name}\n" in res.stderr
        with Image.open(out / name) as img:
            assert img.format == "PNG"
            assert img.width > 100


def test_library_result(weights: Path, data: dict, cache_dir: Path) -> None:
    images, labels = data["test"]
    r = evaluate(weights, batch_size=5, cache_dir=cache_dir)
    np.testing.assert_array_equal(r.preds, expected(weights, images))
    np.testing.assert_array_equal(r.labels, labels)
    assert r.confidences.shape == (N_TEST,)
    assert np.all((r.confidences > 0.1) & (r.confidences <= 1))
    assert r.accuracy_line() == accuracy_line(r.preds, labels)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "0", "0 is not in the range x>=1."),
        ("--batch-size", "-1", "-1 is not in the range x>=1."),
        ("--batch-size", "abc", "'abc' is not a valid integer range."),
        ("--batch-size", "1.5", "'1.5' is not a valid integer range."),
        ("--limit", "0", "0 is not in the range x>=1."),
        ("--split", "val", "'val' is not one of 'test', 'train'."),
    ],
)
def test_bad_options(weights: Path, option: str, value: str, message: str) -> None:
    res = invoke("--weights", str(weights), option, value)
    assert res.exit_code == 2
    assert res.stderr.endswith(f"Error: Invalid value for '{option}': {message}\n")


def test_missing_weights(tmp_path: Path, data: dict) -> None:
    p = tmp_path / "nope.pkl"
    res = invoke("--weights", str(p))
    assert res.exit_code == 5
    assert res.stderr == f"Error: cannot read weights {p}: no such file\n"
    assert res.stdout == ""


def test_unwritable_report_folder(weights: Path, data: dict, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    folder = tmp_path / "file" / "report"
    res = invoke("--weights", str(weights), "--report", str(folder))
    assert res.exit_code == 1
    assert res.stderr == f"Error: cannot write to folder {folder}: {tmp_path / 'file'} is a file\n"
    assert res.stdout == ""


def test_failed_evaluation_removes_the_report_folders_it_made(data: dict, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    missing = tmp_path / "nope.pkl"
    res = invoke("--weights", str(missing), "--report", str(tmp_path / "old" / "new" / "deep"))
    assert res.exit_code == 5
    assert res.stderr == f"Error: cannot read weights {missing}: no such file\n"
    assert list((tmp_path / "old").iterdir()) == []  # "old" was there before: it stays


# --- real MNIST and the textbook's weights -------------------------------------------


@pytest.fixture(scope="module")
def real_cache(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the real test split, fetched from the local copy on first use."""
    cache = tmp_path_factory.mktemp("real-cache")
    res = CliRunner().invoke(
        cli,
        ["evaluate", "-q", "--mirror", str(real_mnist_dir), "--cache-dir", str(cache)],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("Accuracy: ")
    assert (cache / "t10k-images-idx3-ubyte").stat().st_size == 7_840_016
    return cache


@pytest.mark.parametrize("batch_size", [1, 7, 100, 1000, 10000, 20000])
def test_textbook_accuracy(real_cache: Path, reference_weights: Path, batch_size: int) -> None:
    args = ["-q", "--weights", str(reference_weights), "--cache-dir", str(real_cache)]
    res = invoke(*args, "--batch-size", str(batch_size))
    assert res.exit_code == 0, res.output
    assert res.output == "Accuracy: 0.9352 (9352/10000)\n"


def test_textbook_predictions_identical(
    real_cache: Path, real_mnist_dir: Path, reference_weights: Path
) -> None:
    want = reference_labels(real_mnist_dir, reference_weights)
    labels = real_test_set(real_mnist_dir)[1]
    r = evaluate(reference_weights, cache_dir=real_cache)
    np.testing.assert_array_equal(r.preds, want)
    res = invoke("--json", "--weights", str(reference_weights), "--cache-dir", str(real_cache))
    s = json.loads(res.stdout)
    assert (s["accuracy"], s["correct"], s["total"]) == (0.9352, 9352, 10000)
    assert s["confusion_matrix"] == confusion_matrix(labels, want).tolist()


def test_textbook_weights_rejections(
    real_cache: Path, real_mnist_dir: Path, reference_weights: Path
) -> None:
    images, labels = real_test_set(real_mnist_dir)
    with open(reference_weights, "rb") as f:
        network = pickle.load(f)  # the trusted reference file, loaded as the book does
    y = textbook_predict(network, images.astype(np.float32) / 255.0)
    ok = y.max(axis=1) >= DEFAULT_RULE.threshold  # the book's weights carry no rule
    correct = int(np.sum(ok & (y.argmax(axis=1) == labels)))
    res = invoke("--json", "--weights", str(reference_weights), "--cache-dir", str(real_cache))
    s = json.loads(res.stdout)["not_a_digit"]
    assert s["rule"] == DEFAULT_RULE.as_dict()
    assert (s["rejected"], s["accepted"], s["accepted_correct"]) == (
        int(np.sum(~ok)),
        int(np.sum(ok)),
        correct,
    )
