"""A source tree (a checkout, an unpacked sdist) works as an installed package does."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import mnist_infer
from mnist_infer.shipped import SHIPPED, default_weights_path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "mnist_infer"


def test_python_m_from_the_source_root_runs_the_source_tree() -> None:
    """`python -m mnist_infer` in the source folder imports the package there, weights and all."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    res = subprocess.run(
        [sys.executable, "-m", "mnist_infer", "info", "small"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"File:       {SOURCE / '_shipped' / SHIPPED['small']}\n")


def test_shipped_weights_are_in_the_source_tree() -> None:
    if Path(mnist_infer.__file__).resolve().parent == SOURCE:  # tests run on this tree
        assert default_weights_path().parent == SOURCE / "_shipped"
    for name in SHIPPED.values():
        assert (SOURCE / "_shipped" / name).is_file()
        assert (SOURCE / "_shipped" / (name + ".json")).is_file()


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
            modules |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in modules if m.split(".")[0] == "mnist_infer"}


def test_tests_import_only_modules_of_the_source_tree() -> None:
    """Nothing the build alone creates: each module (or name in one) a test imports is there."""
    for test in sorted((ROOT / "tests").glob("*.py")):
        for module in _imported_modules(test):
            parts = module.split(".")
            for n in range(len(parts), 0, -1):
                base = SOURCE.joinpath(*parts[1:n])
                if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                    break
            else:
                raise AssertionError(f"{test.name} imports {module}, which is not in {SOURCE}")
