"""Shared fixtures: a private cache folder per test; real data from MNIST_INFER_TEST_DATA."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# The suite's property tests are the same examples on every run (no flaky failures, no
# example database); `pytest --hypothesis-profile fuzz tests/test_x.py` searches far longer.
settings.register_profile("suite", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("fuzz", max_examples=50_000, deadline=None)
settings.load_profile("suite")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at tmp_path so no test touches the home folder."""
    d = tmp_path / "cache"
    monkeypatch.setenv("MNIST_INFER_CACHE", str(d))
    monkeypatch.delenv("MNIST_INFER_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # `python -m mnist_infer` in a child runs the code under test (a checkout, an unpacked
    # sdist or an installed package), never a source folder that happens to be its working
    # directory.
    monkeypatch.setenv("PYTHONSAFEPATH", "1")
    monkeypatch.setenv("PYTHONPATH", _tested_root())
    return d


def _tested_root() -> str:
    """The folder that holds the mnist_infer package the tests import."""
    import mnist_infer

    return str(Path(mnist_infer.__file__).resolve().parent.parent)


def _test_data() -> Path | None:
    v = os.environ.get("MNIST_INFER_TEST_DATA")
    return Path(v) if v else None


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """Folder with the four real MNIST .gz files, or skip."""
    root = _test_data()
    if root is None:
        pytest.skip("MNIST_INFER_TEST_DATA is not set (real MNIST files unavailable)")
    d = root / "mnist"
    if not (d / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no real MNIST files in {d}")
    return d


@pytest.fixture(scope="session")
def reference_weights() -> Path:
    """The textbook's sample_weight.pkl, or skip."""
    root = _test_data()
    if root is None:
        pytest.skip("MNIST_INFER_TEST_DATA is not set (textbook weights unavailable)")
    p = root / "reference" / "sample_weight.pkl"
    if not p.is_file():
        pytest.skip(f"no textbook weights at {p}")
    return p


@pytest.fixture
def loopback():
    """A real HTTP server on 127.0.0.1 (see tests/loopback.py), closed after the test."""
    from loopback import Loopback

    server = Loopback()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mini_mnist(tmp_path_factory: pytest.TempPathFactory):
    """Small generated MNIST-like .gz files with their own pinned hashes (read-only)."""
    from loopback import make_mini_mnist

    return make_mini_mnist(tmp_path_factory.mktemp("mini") / "mirror")


def _specs_of(cache: Path) -> tuple:
    import hashlib

    from mnist_infer import catalog

    specs = []
    for spec in catalog.FILES:
        p = cache / spec.name
        if p.is_file():
            data = p.read_bytes()
            spec = spec._replace(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        specs.append(spec)
    return tuple(specs)


def pin_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the files now in `cache` the pinned ones (their SHA-256 and size), so they verify."""
    from mnist_infer import catalog

    monkeypatch.setattr(catalog, "FILES", _specs_of(cache))


def pinned_command(cache: Path) -> list[str]:
    """`python -m mnist_infer`, but with the files now in `cache` pinned, as pin_cache does."""
    code = (
        "from mnist_infer import catalog; from mnist_infer.catalog import FileSpec;"
        f" catalog.FILES = {_specs_of(cache)!r}; from mnist_infer.cli import main; main()"
    )
    return [sys.executable, "-c", code]


@pytest.fixture
def filled(cache_dir: Path, mini_mnist, monkeypatch: pytest.MonkeyPatch):
    """A cache holding the generated files, as a verified download leaves it; their hashes
    are the pinned ones."""
    from mnist_infer import catalog

    monkeypatch.setattr(catalog, "FILES", mini_mnist.files)
    cache_dir.mkdir()
    for name, raw in mini_mnist.raw.items():
        (cache_dir / name).write_bytes(raw)
    return mini_mnist


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """Random 784-30-20-10 weights: predictions vary from image to image."""
    import numpy as np

    from mnist_infer.weights import save_weights

    rng = np.random.default_rng(7)
    sizes = (784, 30, 20, 10)
    params = {}
    for i in range(1, 4):
        params[f"W{i}"] = rng.normal(size=(sizes[i - 1], sizes[i])).astype(np.float32)
        params[f"b{i}"] = rng.normal(size=sizes[i]).astype(np.float32)
    p = tmp_path / "w.pkl"
    save_weights(params, p)
    return p


@pytest.fixture
def no_write_access(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders refuse new files, as for a user without write access (even when run as root)."""
    import tempfile

    def refuse(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
