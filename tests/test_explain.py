"""`mnist-infer explain`: one image's forward pass, step by step, as text and as JSON."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image
from serving import drawing, mnist_like
from test_not_a_digit import GUESS, LOGITS, flat

from mnist_infer import explore
from mnist_infer.cli import cli
from mnist_infer.export import to_art
from mnist_infer.functions import softmax
from mnist_infer.image import load_digit
from mnist_infer.network import Network
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import load_weights

FORMATS = "PNG, JPEG, BMP, GIF, TIFF or WebP"
NAMES = ["x", "a1", "z1", "a2", "z2", "a3", "y"]


def explain(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["explain", *args], input=stdin)


@pytest.fixture
def seven(tmp_path: Path) -> Path:
    p = tmp_path / "seven.png"
    p.write_bytes(drawing(1))
    return p


def forward(weights: Path | None, image: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The digit predict sees and every quantity of its forward pass, x first."""
    digit, _ = load_digit(image, str(image))
    net = Network(load_weights(weights or default_weights_path()))
    x = digit.reshape(1, -1) / np.float32(255)
    pre, post = explore.forward(net, x)
    out = [x[0]]
    for a, z in zip(pre, post, strict=True):
        out += [a[0], z[0]]
    return digit, out


def test_text_tells_the_story_step_by_step(seven: Path, weights: Path) -> None:
    res = explain(str(seven), "--weights", str(weights))
    assert res.exit_code == 0, res.output
    digit, values = forward(weights, seven)
    y = values[-1]
    d = int(y.argmax())
    lines = res.stdout.splitlines()
    sure = f"{y[d]:.1%}"  # random weights: the default rule (max_prob < 0.5) may reject it
    head = f"{d} ({sure} sure)" if y[d] >= 0.5 else f"not a digit (looks most like {d}, {sure})"
    assert lines[0] == f"{seven}: {head}"
    assert lines[2:30] == to_art(digit).split("\n")
    steps = [line.split()[:3] for line in lines[32:39]]
    shapes = ["(1,", "784)"], *[["(1,", f"{n})"] for n in (30, 30, 20, 20, 10, 10)]
    assert steps == [[n, *s] for n, s in zip(NAMES, shapes, strict=True)]
    x, a1, z1 = values[:3]
    assert lines[32].endswith(f"{int((x > 0.5).sum())} of 784 above 0.5")
    top = np.argsort(-a1)[:3]
    assert lines[33].endswith("largest " + ", ".join(f"#{k} {a1[k]:+.2f}" for k in top))
    assert "= x · W1 + b1  with W1 (784, 30)" in lines[33]
    assert f"{int((z1 > 0.5).sum())} of 30 above 0.5; strongest #" in lines[34]
    assert "= softmax(a3)" in lines[38]
    assert lines[38].split("most probable ")[1].startswith(f"{d} {y[d]:.3f}")
    assert lines[-11] == "Probabilities:"
    bars = lines[-10:]
    assert [b.split()[:2] for b in bars] == [[str(k), f"{p:.3f}"] for k, p in enumerate(y)]
    assert bars[d].endswith("#" * round(y[d] * 40))


def test_the_winner_is_explained_by_its_largest_terms(seven: Path, weights: Path) -> None:
    out = explain(str(seven), "--weights", str(weights)).stdout
    net = Network(load_weights(weights))
    _, values = forward(weights, seven)
    z2, a3 = values[4], values[5]
    d = int(a3.argmax())
    terms = z2 * net.params["W3"][:, d]
    assert f"Why {d}: its score a3[{d}] = {a3[d]:+.2f} is the bias b3[{d}]" in out
    shown = re.findall(r"^    #(\d+) +([+-][0-9.]+) = ", out, re.M)
    best = np.argsort(-terms)[:5]
    worst = [j for j in np.argsort(terms)[:3] if terms[j] < 0]
    assert [int(j) for j, _ in shown] == [*best, *worst]
    assert [t for _, t in shown] == [f"{terms[j]:+.2f}" for j in [*best, *worst]]


def test_json_has_one_step_per_quantity(seven: Path, weights: Path) -> None:
    res = explain(str(seven), "--weights", str(weights), "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert list(got) == [
        *("path", "steps", "digit", "confidence", "is_digit", "guess", "probabilities"),
        "contributions",
    ]
    _, values = forward(weights, seven)
    steps = got["steps"]
    assert [s["name"] for s in steps] == NAMES
    assert [s["shape"] for s in steps] == [[1, n] for n in (784, 30, 30, 20, 20, 10, 10)]
    assert [s["op"] for s in steps] == [
        *("input", "x · W1 + b1", "sigmoid(a1)", "z1 · W2 + b2", "sigmoid(a2)"),
        *("z2 · W3 + b3", "softmax(a3)"),
    ]
    assert [s.get("weights") for s in steps[1::2]] == [[784, 30], [30, 20], [20, 10]]
    for s, v in zip(steps, values, strict=True):
        np.testing.assert_allclose(s["values"], v, atol=1e-6)
        if s["name"] != "x":
            want = np.argsort(-v, kind="stable")[:5].tolist()
            assert [u["unit"] for u in s["strongest"]] == want
        if not s["name"].startswith("a"):
            assert s["above_half"] == int((v > 0.5).sum())
    y = values[-1]
    assert got["guess"] == int(y.argmax())
    assert got["is_digit"] is bool(y.max() >= 0.5)  # the default rule: weights without metadata
    assert got["digit"] == (got["guess"] if got["is_digit"] else None)
    np.testing.assert_allclose(got["probabilities"], y, atol=1e-6)
    c = got["contributions"]
    assert c["digit"] == got["guess"]
    assert c["score"] == pytest.approx(float(values[-2][got["guess"]]), abs=1e-5)
    for t in c["for"] + c["against"]:
        assert t["product"] == pytest.approx(t["z"] * t["weight"], abs=1e-5)
    assert all(t["product"] > 0 for t in c["for"])
    assert all(t["product"] < 0 for t in c["against"])


def test_a_non_digit_is_said_to_be_one(seven: Path, tmp_path: Path) -> None:
    w = flat(tmp_path / "flat.pkl", rule=("max_prob", 0.9))  # nothing reads as a digit
    res = explain(str(seven), "--weights", str(w))
    assert res.exit_code == 0, res.output
    p = softmax(LOGITS)[GUESS]
    assert res.stdout.splitlines()[0] == f"{seven}: not a digit (looks most like {GUESS}, {p:.1%})"
    assert f"Why {GUESS}: its score a3[{GUESS}] = " in res.stdout
    assert "The largest terms z2[j] · W3[j, 4]: none" in res.stdout  # W3 is zero
    got = json.loads(explain(str(seven), "--weights", str(w), "--json").stdout)
    assert (got["digit"], got["is_digit"], got["guess"]) == (None, False, GUESS)
    assert got["contributions"]["digit"] == GUESS


def test_weights_whose_metadata_cannot_be_used_get_a_warning(seven: Path, tmp_path: Path) -> None:
    w = flat(tmp_path / "flat.pkl", rule=("max_prob", 0.9))
    (tmp_path / "flat.pkl.json").write_text("{not json")
    res = explain(str(seven), "--weights", str(w))
    assert res.exit_code == 0
    assert res.stderr.startswith("Warning: ")
    assert res.stderr.endswith("; using the default not-a-digit rule\n")


@pytest.mark.parametrize(("name", "hidden"), [("small", [50, 100]), ("default", None)])
def test_shipped_weights_by_name(seven: Path, name: str, hidden: list[int] | None) -> None:
    got = json.loads(explain(str(seven), "--weights", name, "--json").stdout)
    net = Network(load_weights(default_weights_path()))
    hidden = hidden or net.sizes[1:-1]
    assert [s["shape"][1] for s in got["steps"][1:-2:2]] == hidden
    assert got["digit"] == 7


def test_weights_from_the_environment(seven: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_INFER_WEIGHTS", "small")
    got = json.loads(explain(str(seven), "--json").stdout)
    assert got["steps"][1]["shape"] == [1, 50]


def test_standard_input_and_other_formats(weights: Path) -> None:
    img = Image.open(io.BytesIO(drawing(1)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    res = explain("-", "--weights", str(weights), stdin=buf.getvalue())
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("-: ")


def test_no_preprocess_takes_the_pixels_as_they_are(tmp_path: Path, weights: Path) -> None:
    p = tmp_path / "mnist.png"
    p.write_bytes(mnist_like())
    got = json.loads(explain(str(p), "--no-preprocess", "--json", "--weights", str(weights)).stdout)
    pixels = np.asarray(Image.open(p)).reshape(-1) / 255
    np.testing.assert_allclose(got["steps"][0]["values"], pixels, atol=1e-6)


def _blank(tmp_path: Path) -> Path:
    p = tmp_path / "blank.png"
    Image.new("L", (28, 28), 0).save(p)
    return p


def _text(tmp_path: Path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    return p


@pytest.mark.parametrize(
    ("make", "extra", "code", "message"),
    [
        (lambda t: t / "missing.png", [], 5, "Error: {p}: no such file or directory\n"),
        (lambda t: t, [], 5, "Error: {p}: is a folder, expected one image file\n"),
        (_text, [], 5, f"Error: {{p}}: not an image (expected {FORMATS})\n"),
        (_blank, [], 5, "Error: {p}: no digit found (blank or single-colour image)\n"),
        (
            lambda t: t / "seven.png",
            ["--no-preprocess"],
            5,
            "Error: {p}: is 280x280, --no-preprocess needs 28x28"
            " (drop --no-preprocess to resize)\n",
        ),
        (
            lambda t: t / "seven.png",
            ["--weights", "/nonexistent/w.pkl"],
            5,
            "Error: cannot read weights /nonexistent/w.pkl: no such file\n",
        ),
    ],
)
def test_errors_say_what_is_wrong(
    tmp_path: Path, seven: Path, make: Any, extra: list[str], code: int, message: str
) -> None:
    p = make(tmp_path)
    res = explain(str(p), *extra)
    assert (res.exit_code, res.stdout, res.stderr) == (code, "", message.format(p=p))


def test_empty_standard_input_is_exit_5() -> None:
    res = explain("-", stdin=b"")
    assert (res.exit_code, res.stderr) == (5, "Error: -: empty file\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Error: Missing argument 'IMAGE'."),
        (["a.png", "b.png"], "Error: Got unexpected extra argument (b.png)"),
        (
            ["a.png", "--invert", "maybe"],
            "Error: Invalid value for '--invert': 'maybe' is not one of",
        ),
    ],
)
def test_usage_errors_are_exit_2(args: list[str], message: str) -> None:
    res = explain(*args)
    assert res.exit_code == 2
    assert message in res.stderr
