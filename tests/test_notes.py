"""The study notes' code runs against the package with only the imports changed.

Each note's snippets run in order in one namespace, as a reader runs them: first as written
(only `from mnist import load_mnist` now names the package), then with every function and
class the package provides imported from it instead of defined by the note, and, where a note
builds its own TwoLayerNet, that class on the package's layers. The package's runs must do
what the note's own code does (same printed numbers, same errors, same random draws) and print
what the note shows it printing. The notes are read from $MNIST_INFER_TEST_DATA/notes.
"""

from __future__ import annotations

import ast
import io
import os
import re
import warnings
from contextlib import chdir, redirect_stdout
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from notes import Snippet, indent, is_code, snippets, split_statements, strip_comments

FUNCTIONS = ("step_function", "sigmoid", "relu", "identity_function", "softmax")
PROVIDED = {
    **{name: ("mnist_infer.functions", name) for name in FUNCTIONS},
    **{name: ("mnist_infer.perceptron", name) for name in ("AND", "NAND", "OR", "XOR")},
    **{name: ("mnist_infer.layers", name) for name in ("Affine", "Sigmoid", "Relu")},
    "SoftmaxWithLoss": ("mnist_infer.layers", "SoftmaxWithLoss"),
    "FCL": ("mnist_infer.layers", "Affine"),  # the first note's name for Affine
    "TwoLayerNet": ("mnist_infer.network", "TwoLayerNet"),
}
MODULES = {"mnist": "mnist_infer.dataset", "dataset.mnist": "mnist_infer.dataset"}
NETWORKS = {"TwoLayerNet"}


def with_imports(code: str, provided: set[str]) -> str:
    """The snippet with the book's `mnist` module renamed and the provided definitions
    replaced by imports from the package."""
    tree = ast.parse(code)
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.ImportFrom) and node.module in MODULES:
            node.module = MODULES[node.module]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in provided:
            module, name = PROVIDED[node.name]
            alias = ast.alias(name, None if name == node.name else node.name)
            tree.body[i] = ast.ImportFrom(module, [alias], 0)
    return ast.unparse(ast.fix_missing_locations(tree))


class Outcome(NamedTuple):
    output: str  # what it printed, then the value it shows (a notebook cell)
    error: str | None  # the exception's type, if it raised


def run_note(snips: list[Snippet], provided: set[str]) -> list[Outcome]:
    """Run the snippets in order in one namespace, as a script; each starts from its own seed."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec("import numpy as np", ns)
    if any("plt." in s.code for s in snips):
        exec("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt", ns)
    outcomes = []
    for s in snips:
        np.random.seed(s.line)  # noqa: NPY002 (what the notes draw from)
        code = ast.parse(with_imports(s.code, provided))
        shown = code.body.pop() if s.shows_value and isinstance(code.body[-1], ast.Expr) else None
        out, error = io.StringIO(), None
        with redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the notes' own overflow demonstration
            try:
                exec(compile(code, f"{s.note}:{s.line}", "exec"), ns)
                if shown is not None:
                    value = eval(compile(ast.Expression(shown.value), s.note, "eval"), ns)
                    if value is not None:
                        print(repr(value))
            except Exception as e:
                error = type(e).__name__
        outcomes.append(Outcome(out.getvalue(), error))
    return outcomes


def numbers(text: str) -> np.ndarray:
    """The numbers in printed output, whatever numpy's version formats them as."""
    text = re.sub(r"dtype=\w+|np\.\w+\(", " ", text)
    found = re.findall(r"nan|[-+]?inf|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text)
    return np.array([float(x) for x in found])


def assert_same_numbers(got: str, want: str, where: str) -> None:
    a, b = numbers(got), numbers(want)
    assert a.shape == b.shape, f"{where}: printed {got!r}, expected {want!r}"
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=where)


def _note_files() -> list[Path | None]:
    root = os.environ.get("MNIST_INFER_TEST_DATA")
    folder = Path(root, "notes") if root else None
    return sorted(folder.glob("*.txt")) if folder and folder.is_dir() else [None]


@pytest.mark.slow
@pytest.mark.parametrize("note", _note_files(), ids=lambda p: p.stem if p else "notes")
def test_note_runs_on_the_package(
    note: Path | None, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch
) -> None:
    if note is None:
        pytest.skip("MNIST_INFER_TEST_DATA is not set or has no notes/ (the study notes)")
    snips = snippets(note)
    if not snips:
        pytest.skip(f"{note.name} shows no code")
    code = "\n".join(s.code for s in snips)
    if "plt." in code:
        pytest.importorskip("matplotlib", reason="the note plots with matplotlib")
    if "load_mnist" in code:
        mnist = request.getfixturevalue("real_mnist_dir")
        monkeypatch.setenv("MNIST_INFER_MIRRORS", str(mnist))
    if "sample_weight.pkl" in code:  # the notes open it from the working folder
        (tmp_path / "sample_weight.pkl").symlink_to(request.getfixturevalue("reference_weights"))
    defined = {n.name for s in snips for n in ast.parse(s.code).body if hasattr(n, "name")}
    modes = [set(PROVIDED)]
    if defined & NETWORKS:
        modes.append(set(PROVIDED) - NETWORKS)  # the note's network on the package's layers
    with chdir(tmp_path):
        written = run_note(snips, set())
        runs = [run_note(snips, provided) for provided in modes]
    for s, theirs, *ours in zip(snips, written, *runs, strict=True):
        where = f"{s.note} line {s.line}"
        for mine in ours:
            assert mine.error == theirs.error, f"{where}: {mine.error} where the note's code gave"
            assert_same_numbers(mine.output, theirs.output, where)
        random = "random" in s.code or "TwoLayerNet(" in s.code
        if s.expected and not random and theirs.error is None:
            assert_same_numbers(
                ours[0].output, "\n".join(s.expected), where + " (as the note shows)"
            )


# --- how the notes' layout is restored --------------------------------------------------


SPLITS = [
    ("x = np.arange(5) y = f(x) plt.plot(x, y)", "x = np.arange(5)|y = f(x)|plt.plot(x, y)"),
    ("def f(x): return 1/(1+np.exp(-x))", "def f(x):|return 1/(1+np.exp(-x))"),
    ("import sys, os from mnist import load_mnist", "import sys, os|from mnist import load_mnist"),
    ("def g(i): return f(i) (a, b), c = load()", "def g(i):|return f(i)|(a, b), c = load()"),
    ("a = \\ f(1) return a", "a =  f(1)|return a"),
    ("if p == t[i]: n += 1", "if p == t[i]:|n += 1"),
    ("A.shape", "A.shape"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "statements"), SPLITS)
def test_split_statements(line: str, statements: str) -> None:
    assert split_statements(line) == statements.split("|")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        *[(line, False) for line in ("Accuracy:0.9352", "- Scala", "1 | 2 | 3 |", "[[ Batch 1 ]]")],
        *[(line, False) for line in ("x", "array([[-0.39, 1.2],", "y =", r"\sigma(x) = 1", "'''")],
        *[(line, True) for line in ("import numpy as np", "W1 = f(2, 4) # 가중치", "return x")],
    ],
)
def test_is_code(line: str, code: bool) -> None:
    assert is_code(line) is code


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("x = f(1) # 입력 데이터", "x = f(1) "),
        ("# 첫번째 은닉층 계산 X = f(1) Y = 2", " X = f(1) Y = 2"),
        ("# batch1 x, _ = get()", " x, _ = get()"),
        ("plt.ylim(0, 1) #y축 범위 지정 plt.show()", "plt.ylim(0, 1)  plt.show()"),
        ("# Layer Class 저장", ""),
    ],
)
def test_strip_comments(line: str, code: str) -> None:
    assert strip_comments(line) == code


def test_indent_restores_blocks() -> None:
    lines = [
        *("class Net:", "def __init__(self):", "self.params = []", "for layer in self.layers:"),
        *("self.params += layer.params", "def predict(self, x):", "for layer in self.layers:"),
        *("x = layer.forward(x)", "return x", "net = Net()", "for i in range(3):", "y = i"),
        'print("Accuracy:" + str(y))',
    ]
    want = """\
class Net:
    def __init__(self):
        self.params = []
        for layer in self.layers:
            self.params += layer.params
    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x
net = Net()
for i in range(3):
    y = i
print("Accuracy:" + str(y))"""
    assert "\n".join(indent(lines)) == want


def test_with_imports_replaces_only_what_the_package_provides() -> None:
    code = "from mnist import load_mnist\ndef sigmoid(x): return x\nclass FCL: pass\ndef f(): pass"
    assert with_imports(code, set(PROVIDED)).splitlines() == [
        "from mnist_infer.dataset import load_mnist",
        "from mnist_infer.functions import sigmoid",
        "from mnist_infer.layers import Affine as FCL",
        "",
        "def f():",
        "    pass",
    ]


def test_numbers_ignore_numpys_formatting() -> None:
    assert_same_numbers("[0.01821127 0.24519181]\n1.0", "[ 0.01821127  0.24519181] 1.0", "x")
    assert_same_numbers("array([nan, 1.])", "array([ nan, 1.], dtype=float64)", "x")
    with pytest.raises(AssertionError):
        assert_same_numbers("[1 2]", "[1 3]", "x")
