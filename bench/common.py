"""What every benchmark shares: paths, result rows, the child-process spawner, timing helpers
and the real data (from $MNIST_INFER_TEST_DATA, else ../shared beside the repository)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import textbook_ch3 as tb

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
CACHE = WORK / "cache"
TEXTBOOK_PKL = WORK / "mnist.pkl"
PNG_DIR = WORK / "pngs"
RESULTS = BENCH / "results.json"
BIN = Path(sys.executable).parent
CLI = str(BIN / "mnist-infer")

PROCESS_RUNS = 7
IMPORTS = "import numpy, click"  # the floor under any numpy + Click command
BATCH_SIZES = (100, 1000, 10000)
TARGETS = {"time": 0.65, "memory": 0.3, "epoch": 5.0, "vs_torch": 1.0}


class Skip(Exception):
    """A part of the benchmark that cannot run here; the message says why."""


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: float | None = None  # at most this (at least this where `least`)
    least: bool = False

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.least else self.value <= self.target


@dataclass
class Section:
    title: str
    status: str = "ok"
    reason: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- environment -------------------------------------------------------------------


def find_shared() -> Path | None:
    """Folder with mnist/*.gz and reference/sample_weight.pkl, if any."""
    env = os.environ.get("MNIST_INFER_TEST_DATA")
    root = Path(env) if env else REPO.parent / "shared"
    return root if (root / "mnist" / "t10k-images-idx3-ubyte.gz").is_file() else None


def need_shared() -> Path:
    shared = find_shared()
    if shared is None:
        raise Skip("no real MNIST data: set MNIST_INFER_TEST_DATA or provide ../shared/mnist")
    return shared


def weights_file() -> Path:
    path = need_shared() / "reference" / "sample_weight.pkl"
    if not path.is_file():
        raise Skip(f"no textbook weights at {path}")
    return path


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


@cache
def command_help(name: str) -> str | None:
    """`mnist-infer NAME --help` text, or None when the command does not exist yet."""
    if not Path(CLI).is_file():
        return None
    p = subprocess.run([CLI, name, "--help"], capture_output=True, text=True, check=False)
    return p.stdout if p.returncode == 0 else None


def need_command(name: str) -> str:
    text = command_help(name)
    if text is None:
        raise Skip(f"`mnist-infer {name}` not available yet")
    return text


def child_env() -> dict[str, str]:
    # Children run as in a normal install: with cached bytecode, whatever this shell says.
    drop = ("MNIST_INFER_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["MNIST_INFER_CACHE"] = str(CACHE)
    return env


class Spawner:
    """A small helper process that runs children and reports their time and peak RSS."""

    def __init__(self) -> None:
        argv = [sys.executable, "-I", "-S", str(BENCH / "spawner.py")]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def run(
        self,
        argv: list[str],
        cwd: Path = WORK,
        keep: int | None = 4000,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run argv (with extra env); its output comes back cut to `keep` characters (None: all)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        job = {"argv": argv, "cwd": str(cwd), "env": child_env() | (env or {}), "keep": keep}
        self.proc.stdin.write(json.dumps(job) + "\n")
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# --- measuring ---------------------------------------------------------------------


def timings(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall times of `repeat` calls of fn() in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    return statistics.median(timings(fn, repeat, warmup))


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each fn, run round-robin so that load changes hit all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def test_split() -> tuple[np.ndarray, np.ndarray]:
    """Test images uint8 (n, 784) and labels, read straight from the IDX files."""
    d = need_shared() / "mnist"
    return (
        tb._load_img(str(d / "t10k-images-idx3-ubyte.gz")),
        tb._load_label(str(d / "t10k-labels-idx1-ubyte.gz")),
    )


def textbook_pickle() -> Path:
    """The textbook's mnist.pkl dataset cache, made once from the IDX files."""
    if not TEXTBOOK_PKL.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = TEXTBOOK_PKL.with_suffix(".tmp")
        tb.init_mnist(str(need_shared() / "mnist"), str(tmp))
        os.replace(tmp, TEXTBOOK_PKL)
    return TEXTBOOK_PKL


def ensure_cache(spawner: Spawner) -> None:
    """Populate bench/work/cache with `mnist-infer download` from the local mirror."""
    need_command("download")
    mirror = need_shared() / "mnist"
    r = spawner.run([CLI, "download", "--mirror", str(mirror), "--cache-dir", str(CACHE)])
    if r["rc"] != 0:
        last = (r["stderr"].strip().splitlines() or ["no message"])[-1]
        raise Skip(f"`mnist-infer download` failed (exit {r['rc']}): {last}")


def accuracy_in(text: str) -> float | None:
    m = re.search(r"Accuracy:\s*([0-9.]+)", text)
    return float(m.group(1)) if m else None


def flops(params: dict[str, np.ndarray], n: int) -> float:
    """Multiply-adds of the forward pass over n images, counted as 2 FLOP each."""
    return 2.0 * n * sum(params[f"W{i}"].size for i in range(1, 4))


def process_runs(
    spawner: Spawner,
    commands: dict[str, list[str]],
    repeat: int = PROCESS_RUNS,
    envs: dict[str, dict[str, str]] | None = None,
    keep: int | None = 4000,
    warmup: bool = True,
) -> dict[str, list[dict]]:
    """Run the commands `repeat` times each, interleaved (with extra env per command, if
    given, and their output cut to `keep` characters); fail on a non-zero exit."""
    envs = envs or {}
    runs: dict[str, list[dict]] = {k: [] for k in commands}
    if warmup:
        for name, argv in commands.items():
            spawner.run(argv, env=envs.get(name))  # file cache and bytecode, not timed
    for _ in range(repeat):
        for name, argv in commands.items():
            r = spawner.run(argv, keep=keep, env=envs.get(name))
            if r["rc"] != 0:
                raise RuntimeError(f"{name} exited {r['rc']}: {r['stderr'].strip()[-300:]}")
            runs[name].append(r)
    return runs
