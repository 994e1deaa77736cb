"""`predict` says "not a digit" as the weights' rule decides, the same way in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageDraw

from mnist_infer.cli import cli
from mnist_infer.functions import softmax
from mnist_infer.network import Network
from mnist_infer.novelty import DEFAULT_RULE, METADATA_KEY, energy, max_prob
from mnist_infer.preprocess import normalize
from mnist_infer.weights import load_weights, metadata_path, save_weights

# The output's logits of `flat` weights, whatever the image: 4 first, 9 second, the rest tied.
GUESS = 4
LOGITS = np.zeros(10, np.float32)
LOGITS[[GUESS, 9]] = 1.5, 0.5
SCORES = {"max_prob": float(max_prob(LOGITS)), "energy": float(energy(LOGITS))}


def flat(path: Path, logits: np.ndarray = LOGITS, rule: tuple[str, float] | None = None) -> Path:
    """Weights whose logits are `logits` for every image (W3 is zero), with `rule` (score,
    threshold) in their metadata, or no metadata at all."""
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.normal(size=(784, 8)),
        "b1": np.zeros(8),
        "W2": rng.normal(size=(8, 6)),
        "b2": np.zeros(6),
        "W3": np.zeros((6, 10)),
        "b3": np.asarray(logits, np.float64),
    }
    meta = None if rule is None else {METADATA_KEY: {"score": rule[0], "threshold": rule[1]}}
    save_weights(params, path, metadata=meta)
    return path


def ruled(weights: Path, score: str, threshold: float) -> Path:
    """The weights, with a sidecar holding the rule."""
    meta = {METADATA_KEY: {"score": score, "threshold": threshold}}
    metadata_path(weights).write_text(json.dumps(meta))
    return weights


def digit_png(path: Path, k: int = 0) -> Path:
    """A white-on-black stroke figure, shaped by k."""
    big = Image.new("L", (112, 112), 0)
    pts = [(20 + 3 * k, 24 + 5 * k), (86, 20 + 2 * k), (40 + 4 * k, 96 - 3 * k)]
    ImageDraw.Draw(big).line(pts, fill=255, width=6 + 2 * k)
    Image.fromarray(normalize(np.asarray(big, np.float32) / 255)).save(path)
    return path


def invoke(weights: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["predict", "--weights", str(weights), *args])


def confidence(logits: np.ndarray = LOGITS) -> float:
    return float(softmax(np.asarray(logits, np.float32)).max())


def expected_line(path: Path, is_digit: bool, guess: int, conf: float) -> str:
    if is_digit:
        return f"{path}  {guess}  {conf:.3f}"
    return f"{path}  ?  not a digit (looks most like {guess}, {conf:.3f})"


# --- one answer in every format --------------------------------------------------------


@pytest.mark.parametrize("score", ["max_prob", "energy"])
@pytest.mark.parametrize("is_digit", [False, True], ids=["not-a-digit", "digit"])
def test_every_format_says_it(tmp_path: Path, score: str, is_digit: bool) -> None:
    threshold = SCORES[score] + (-0.05 if is_digit else 0.05)
    w = flat(tmp_path / "w.pkl", rule=(score, threshold))
    png = digit_png(tmp_path / "a.png")
    conf = confidence()
    text, js, cs = (invoke(w, *fmt, str(png)) for fmt in ((), ("--json",), ("--csv",)))
    assert [r.exit_code for r in (text, js, cs)] == [0, 0, 0]
    assert [r.stderr for r in (text, js, cs)] == ["", "", ""]
    assert text.stdout == expected_line(png, is_digit, GUESS, conf) + "\n"
    assert json.loads(js.stdout) == {
        "path": str(png),
        "digit": GUESS if is_digit else None,
        "confidence": round(conf, 6),
        "is_digit": is_digit,
        "guess": GUESS,
    }
    rows = list(csv.reader(io.StringIO(cs.stdout)))
    assert rows == [
        ["path", "digit", "confidence", "is_digit", "guess", "error"],
        [str(png), str(GUESS) if is_digit else "", f"{conf:.6f}", str(is_digit).lower(), "4", ""],
    ]


def test_runners_up_follow_a_non_digit(tmp_path: Path) -> None:
    w = flat(tmp_path / "w.pkl", rule=("max_prob", 0.9))
    png = digit_png(tmp_path / "a.png")
    p = softmax(LOGITS)
    res = invoke(w, "--top-k", "3", str(png))
    assert res.stdout == (
        f"{png}  ?  not a digit (looks most like 4, {p[4]:.3f})  9:{p[9]:.3f}  0:{p[0]:.3f}\n"
    )
    rows = list(csv.reader(io.StringIO(invoke(w, "--csv", "--top-k", "2", str(png)).stdout)))
    assert rows[0][3:8] == ["is_digit", "guess", "digit_2", "probability_2", "error"]
    assert rows[1][1:7] == ["", f"{p[4]:.6f}", "false", "4", "9", f"{p[9]:.6f}"]


def test_weights_without_a_rule_use_the_default(tmp_path: Path) -> None:
    sure = np.zeros(10, np.float32)
    sure[7] = 4.0  # probability e^4 / (e^4 + 9), about 0.86
    pngs = [digit_png(tmp_path / f"{k}.png", k) for k in range(2)]
    for logits, guess in ((LOGITS, GUESS), (sure, 7)):
        w = flat(tmp_path / f"w{guess}.pkl", logits)
        assert not metadata_path(w).exists()
        conf = confidence(logits)
        is_digit = conf >= DEFAULT_RULE.threshold
        res = invoke(w, *map(str, pngs))
        assert res.exit_code == 0
        assert res.stdout.splitlines() == [expected_line(p, is_digit, guess, conf) for p in pngs]
    assert confidence(LOGITS) < DEFAULT_RULE.threshold <= confidence(sure)  # both cases seen


def test_accept_all_turns_the_rule_off(tmp_path: Path) -> None:
    w = flat(tmp_path / "w.pkl", rule=("energy", SCORES["energy"] + 1))
    png = digit_png(tmp_path / "a.png")
    res = invoke(w, "--accept-all", "--json", str(png))
    assert res.exit_code == 0
    rec = json.loads(res.stdout)
    assert (rec["digit"], rec["is_digit"], rec["guess"]) == (GUESS, True, GUESS)
    assert invoke(w, "--accept-all", str(png)).stdout == f"{png}  4  {confidence():.3f}\n"


@pytest.mark.parametrize("is_digit", [False, True], ids=["not-a-digit", "digit"])
def test_min_confidence_marks_only_digits(tmp_path: Path, is_digit: bool) -> None:
    threshold = SCORES["max_prob"] + (-0.05 if is_digit else 0.05)
    w = flat(tmp_path / "w.pkl", rule=("max_prob", threshold))
    png = digit_png(tmp_path / "a.png")
    cut = ("--min-confidence", "0.9")  # above the confidence: a digit is unsure
    line = expected_line(png, is_digit, GUESS, confidence())
    assert invoke(w, *cut, str(png)).stdout == line + ("  unsure\n" if is_digit else "\n")
    assert json.loads(invoke(w, *cut, "--json", str(png)).stdout)["unsure"] is is_digit
    row = list(csv.reader(io.StringIO(invoke(w, *cut, "--csv", str(png)).stdout)))
    assert row[0][-2:] == ["unsure", "error"]
    assert row[1][-2:] == [str(is_digit).lower(), ""]


# --- a batch of different images, some digits, some not ---------------------------------


def test_each_image_judged_on_its_own(tmp_path: Path, weights: Path) -> None:
    pngs = [digit_png(tmp_path / f"{k}.png", k) for k in range(6)]
    x = np.stack([np.asarray(Image.open(p)) for p in pngs]).reshape(6, -1)
    logits = Network(load_weights(weights)).logits(x / np.float32(255))
    scores = energy(logits)
    order = np.sort(scores)
    gap = int(np.argmax(np.diff(order[1:-1]))) + 1  # the widest gap, a figure on each side
    ruled(weights, "energy", float(order[gap : gap + 2].mean()))
    is_digit = scores >= order[gap : gap + 2].mean()
    assert 0 < is_digit.sum() < 6
    probs = softmax(logits)
    res = invoke(weights, "--batch-size", "4", *map(str, pngs))
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [
        expected_line(p, bool(d), int(q.argmax()), float(q.max()))
        for p, d, q in zip(pngs, is_digit, probs, strict=True)
    ]
    records = [
        json.loads(line) for line in invoke(weights, "--json", *map(str, pngs)).stdout.splitlines()
    ]
    assert [r["is_digit"] for r in records] == is_digit.tolist()
    assert [r["guess"] for r in records] == probs.argmax(axis=1).tolist()
    assert [r["digit"] for r in records] == [
        int(g) if d else None for g, d in zip(probs.argmax(axis=1), is_digit, strict=True)
    ]


# --- metadata that cannot be used ----------------------------------------------------------


@pytest.mark.parametrize("quiet", [False, True])
def test_unreadable_metadata_warns_and_uses_the_default_rule(tmp_path: Path, quiet: bool) -> None:
    w = flat(tmp_path / "w.pkl")
    side = metadata_path(w)
    side.write_text("[]")
    png = digit_png(tmp_path / "a.png")
    res = invoke(w, *(["--quiet"] if quiet else []), str(png))
    assert res.exit_code == 0
    assert res.stdout == expected_line(png, False, GUESS, confidence()) + "\n"
    assert res.stderr == (
        ""
        if quiet
        else f"Warning: cannot read metadata {side}: expected a JSON object, found list;"
        " using the default not-a-digit rule\n"
    )


@pytest.mark.parametrize(
    "entry",
    [{"score": "energy"}, {"score": "mystery", "threshold": 1.0}, "max_prob >= 0.99"],
    ids=["no-threshold", "unknown-score", "not-an-object"],
)
def test_a_malformed_rule_is_no_rule(tmp_path: Path, entry: object) -> None:
    w = flat(tmp_path / "w.pkl")
    metadata_path(w).write_text(json.dumps({METADATA_KEY: entry}))
    res = CliRunner().invoke(cli, ["info", "--json", str(w)])
    assert json.loads(res.stdout)["not_a_digit"] == DEFAULT_RULE.as_dict()
    png = digit_png(tmp_path / "a.png")
    assert invoke(w, str(png)).stdout == expected_line(png, False, GUESS, confidence()) + "\n"


# --- info ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [None, ("energy", 7.25)], ids=["default", "from-weights"])
def test_info_shows_the_rule(tmp_path: Path, rule: tuple[str, float] | None) -> None:
    w = flat(tmp_path / "w.pkl", rule=rule)
    text = CliRunner().invoke(cli, ["info", str(w)])
    js = CliRunner().invoke(cli, ["info", "--json", str(w)])
    assert text.exit_code == js.exit_code == 0
    got = json.loads(js.stdout)["not_a_digit"]
    if rule is None:
        assert got == DEFAULT_RULE.as_dict()
        want = (
            f"Rule:       not a digit when max_prob < {DEFAULT_RULE.threshold:g}"
            " (the default rule: the weights carry none)"
        )
    else:
        assert got == {"score": "energy", "threshold": 7.25, "source": "weights"}
        want = "Rule:       not a digit when energy < 7.25 (from the weights)"
    assert want in text.stdout.splitlines()


def test_help_states_the_default_rule_and_how_to_turn_it_off() -> None:
    text = " ".join(CliRunner().invoke(cli, ["predict", "--help"]).stdout.split())
    assert f"not a digit when the best probability is below {DEFAULT_RULE.threshold:g})" in text
    assert DEFAULT_RULE.score == "max_prob"  # what "the best probability" says
    assert "--accept-all turns the rule off" in text
    assert "--accept-all Always name a digit: turn off the not-a-digit rule" in text
