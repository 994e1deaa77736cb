"""Benchmarks of mnist-infer against the textbook's chapter-3 script; writes bench/results.json.

Run with `make bench` (.venv/bin/python bench/run.py [SECTION ...]). Real data comes from
$MNIST_INFER_TEST_DATA, else ../shared beside the repository; parts that need something
missing (data, a command, an optional library) print `skipped: <why>`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
TARGETS = {"time": 0.65, "memory": 0.3, "gemm": 1.3, "epoch": 5.0}


class Skip(Exception):
    """A part of the benchmark that cannot run here; the message says why."""


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: float | None = None  # ratios: at most this

    @property
    def ok(self) -> bool | None:
        return None if self.target is None else self.value <= self.target


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


# --- sections ----------------------------------------------------------------------


def bench_data(sec: Section, spawner: Spawner) -> None:
    """Data: load the test set from a warm cache."""
    if not has_module("mnist_infer.dataset"):
        raise Skip("mnist_infer.dataset not available yet")
    from mnist_infer.dataset import load_arrays

    ensure_cache(spawner)
    ours = median_time(lambda: load_arrays("test", CACHE), repeat=20)
    pkl = str(textbook_pickle())
    theirs = median_time(lambda: tb.load_mnist(pkl), repeat=5)
    sec.rows += [
        Row("load_arrays('test'), warm cache", ours * 1e3, "ms"),
        Row("textbook load_mnist (pickle, normalize)", theirs * 1e3, "ms"),
        Row("load_arrays / textbook load_mnist", ours / theirs, "x"),
    ]


def _process_runs(spawner: Spawner, commands: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Run the commands PROCESS_RUNS times each, interleaved; fail on a non-zero exit."""
    runs: dict[str, list[dict]] = {k: [] for k in commands}
    for argv in commands.values():
        spawner.run(argv)  # warm-up: file cache and bytecode, not timed
    for _ in range(PROCESS_RUNS):
        for name, argv in commands.items():
            r = spawner.run(argv)
            if r["rc"] != 0:
                raise RuntimeError(f"{name} exited {r['rc']}: {r['stderr'].strip()[-300:]}")
            runs[name].append(r)
    return runs


def bench_process(sec: Section, spawner: Spawner) -> None:
    """Whole process: `mnist-infer evaluate` vs the textbook script (batch 100)."""
    weights = weights_file()
    commands = {
        "textbook": [
            sys.executable,
            str(BENCH / "textbook_ch3.py"),
            str(textbook_pickle()),
            str(weights),
        ],
        IMPORTS: [sys.executable, "-c", IMPORTS],
    }
    try:
        need_command("evaluate")
        ensure_cache(spawner)
        commands["evaluate"] = [CLI, "evaluate", "--batch-size", "100"]
        commands["evaluate"] += ["--weights", str(weights), "--cache-dir", str(CACHE)]
    except Skip as e:
        sec.notes.append(f"evaluate skipped: {e}; textbook figures only")
    runs = _process_runs(spawner, commands)
    secs = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    rss = {k: max(r["maxrss_bytes"] for r in v) / 2**20 for k, v in runs.items()}
    for k in commands:
        sec.rows += [
            Row(f"{k}: wall time (median)", secs[k], "s"),
            Row(f"{k}: peak RSS", rss[k], "MiB"),
        ]
    base = "textbook"
    sec.rows += [
        Row(f"{IMPORTS} / textbook: time", secs[IMPORTS] / secs[base], "x"),
        Row(f"{IMPORTS} / textbook: memory", rss[IMPORTS] / rss[base], "x"),
    ]
    if "evaluate" in runs:
        sec.rows += [
            Row("evaluate / textbook: time", secs["evaluate"] / secs[base], "x", TARGETS["time"]),
            Row("evaluate / textbook: memory", rss["evaluate"] / rss[base], "x", TARGETS["memory"]),
            Row(f"evaluate beyond `{IMPORTS}`", (secs["evaluate"] - secs[IMPORTS]) * 1e3, "ms"),
        ]
        ours = accuracy_in(runs["evaluate"][0]["stdout"])
        theirs = accuracy_in(runs[base][0]["stdout"])
        sec.notes.append(f"accuracy: evaluate {ours}, textbook {theirs}")


def gemm_peaks(spawner: Spawner, one_thread: float) -> tuple[float, float]:
    """The GEMM peak with BLAS threads, measured in a fresh process, and `one_thread` times
    the cores: the limit uses the larger, so that a disturbed measurement cannot ease it."""
    from mnist_infer.network import _cpus

    r = spawner.run([sys.executable, str(BENCH / "gemm.py")])
    if r["rc"] != 0:
        raise RuntimeError(f"gemm.py exited {r['rc']}: {r['stderr'].strip()[-300:]}")
    return float(r["stdout"]), one_thread * _cpus()


def _onnx_session(params: dict[str, np.ndarray]) -> Any:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, h = [], [], "x"
    for i in range(1, 4):
        inits += [
            numpy_helper.from_array(params[k].astype(np.float32), k) for k in (f"W{i}", f"b{i}")
        ]
        nodes += [
            helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        h = f"a{i}"
        if i < 3:
            nodes.append(helper.make_node("Sigmoid", [h], [f"z{i}"]))
            h = f"z{i}"
    nodes.append(helper.make_node("Softmax", [h], ["y"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    # Idle pool threads would otherwise spin and slow down what is timed next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _batched(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, bs: int) -> np.ndarray:
    """Labels from run(float32 batch in [0, 1]) over uint8 images, batch by batch."""
    scale = np.float32(255.0)
    return np.concatenate(
        [run(images[s : s + bs] / scale).argmax(axis=1) for s in range(0, len(images), bs)]
    )


def _rivals(
    sec: Section, params: dict[str, np.ndarray], images: np.ndarray
) -> dict[str, dict[int, Callable[[], object]]]:
    """Loops over ONNX Runtime and PyTorch at each batch size, for those installed."""
    runs: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if has_module("onnxruntime") and has_module("onnx"):
        sess = _onnx_session(params)
        runs["onnxruntime"] = lambda x: sess.run(None, {"x": x})[0]
    else:
        sec.notes.append("skipped: onnxruntime not installed (pip install '.[bench]')")
    if has_module("torch"):
        import torch

        w = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in params.items()}

        def fwd(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                h = torch.from_numpy(x)
                h = torch.sigmoid(h @ w["W1"] + w["b1"])
                h = torch.sigmoid(h @ w["W2"] + w["b2"])
                return torch.softmax(h @ w["W3"] + w["b3"], dim=1).numpy()

        runs["torch"] = fwd
    else:
        sec.notes.append("skipped: torch not installed")
    return {
        name: {bs: lambda run=run, bs=bs: _batched(run, images, bs) for bs in BATCH_SIZES}
        for name, run in runs.items()
    }


def products(params: dict[str, np.ndarray], x: np.ndarray, bs: int) -> Callable[[], object]:
    """The three matrix products of the forward pass alone, over float input x, bs rows at a
    time, as plain numpy code with BLAS's own threads runs them."""
    ws = [np.asarray(params[f"W{i}"], np.float32) for i in range(1, 4)]

    def run() -> None:
        for s in range(0, len(x), bs):
            h = x[s : s + bs]
            for w in ws:
                h = h @ w

    return run


def _classify_child(spawner: Spawner) -> dict[str, float]:
    """Best classify times per batch size in a child with OPENBLAS_NUM_THREADS=1, plus
    classify on one thread and the three matmuls alone on one thread (see the script)."""
    ensure_cache(spawner)
    script = BENCH / "classify_child.py"
    argv = [sys.executable, str(script), str(CACHE), str(weights_file()), "9"]
    r = spawner.run([*argv, *map(str, BATCH_SIZES)], env={"OPENBLAS_NUM_THREADS": "1"})
    if r["rc"] != 0:
        raise RuntimeError(f"classify_child exited {r['rc']}: {r['stderr'].strip()[-300:]}")
    return json.loads(r["stdout"])


def bench_forward(sec: Section, spawner: Spawner) -> None:
    """Forward pass alone: Network.classify vs the textbook loop and the GEMM limit."""
    if not has_module("mnist_infer.network"):
        raise Skip("mnist_infer.network not available yet")
    from mnist_infer.network import Network

    images, labels = test_split()
    params = tb.init_network(str(weights_file()))
    net = Network(params)
    n = len(images)
    x = images.astype(np.float32) / np.float32(255.0)
    fns: dict[str, Callable[[], object]] = {
        f"classify {bs}": lambda bs=bs: net.classify(images, bs) for bs in BATCH_SIZES
    }
    fns["textbook"] = lambda: tb.accuracy(params, x, labels, 100)
    t = interleaved(fns, repeat=9)
    rivals = _rivals(sec, params, images)
    # Engines with threads of their own are timed apart, once OpenBLAS's idle threads,
    # which spin for a while after each product, have gone to sleep.
    time.sleep(0.5)
    t |= interleaved(
        {f"{name} {bs}": fn for name, by_size in rivals.items() for bs, fn in by_size.items()}
        | {f"matmuls {bs}": products(params, x, bs) for bs in BATCH_SIZES if bs >= 1000},
        repeat=9,
    )
    for bs in BATCH_SIZES:
        sec.rows.append(Row(f"classify, batch {bs}", n / t[f"classify {bs}"], "images/s"))
    ours = t["classify 100"]
    sec.rows += [
        Row("textbook loop, batch 100 (normalised input)", n / t["textbook"], "images/s"),
        Row("classify / textbook loop at batch 100: time", ours / t["textbook"], "x"),
    ]
    at100 = {name: t[f"{name} 100"] for name in rivals}
    for name, secs in at100.items():
        sec.rows.append(Row(f"{name}, batch 100", n / secs, "images/s"))
        sec.rows.append(Row(f"classify / {name} at batch 100: time", ours / secs, "x"))
    # As `evaluate` runs it: a fresh process, OpenBLAS on one thread, classify's own threads.
    child = _classify_child(spawner)
    for bs in BATCH_SIZES:
        sec.rows.append(Row(f"as evaluate runs it, batch {bs}", n / child[str(bs)], "images/s"))
    for name, secs in ({"textbook": t["textbook"]} | at100).items():
        label = f"as evaluate runs it / {name} at batch 100: time"
        sec.rows.append(Row(label, child["100"] / secs, "x"))
    threads_peak, cores_peak = gemm_peaks(spawner, child["gemm peak, one thread"])
    peak = max(threads_peak, cores_peak)
    limit = flops(params, n) / peak
    fast = min(t[f"classify {bs}"] for bs in BATCH_SIZES if bs >= 1000)
    fast_child = min(child[str(bs)] for bs in BATCH_SIZES if bs >= 1000)
    one, mm = child["one thread"], child["matmuls, one thread"]
    mm_threads = child["matmuls, threads"]
    sec.rows += [
        Row("float32 GEMM peak, BLAS threads (own process)", threads_peak / 1e9, "GFLOP/s"),
        Row("float32 GEMM peak, one thread x cores", cores_peak / 1e9, "GFLOP/s"),
        Row("float32 GEMM peak (the larger)", peak / 1e9, "GFLOP/s"),
        Row(f"GEMM limit for {flops(params, n) / 1e6:.0f} MFLOP", limit * 1e3, "ms"),
        Row("classify, best of batch >= 1000", fast * 1e3, "ms"),
        Row("classify (batch >= 1000) / GEMM limit: time", fast / limit, "x"),
        Row("as evaluate runs it, best of batch >= 1000", fast_child * 1e3, "ms"),
        Row(
            "as evaluate runs it (batch >= 1000) / GEMM limit: time",
            fast_child / limit,
            "x",
            TARGETS["gemm"],
        ),
        # Where the time goes, on one core: the products alone, then all of classify.
        Row("the 3 matmuls alone, 1000-row slices, one thread", mm * 1e3, "ms"),
        Row("the same / 2 cores / GEMM limit: time", mm / 2 / limit, "x"),
        # Measured rather than divided: how far the products alone get on both cores.
        Row("the 3 matmuls alone, one thread per core", mm_threads * 1e3, "ms"),
        Row("the 3 matmuls alone, one thread per core / GEMM limit: time", mm_threads / limit, "x"),
        Row("speed-up of the 3 matmuls alone on threads", mm / mm_threads, "x"),
        Row("classify, batch 1000, one thread", one * 1e3, "ms"),
        Row("classify / the 3 matmuls, one thread: time", one / mm, "x"),
        Row("speed-up of classify's threads", one / fast_child, "x"),
        # The same pass with the first product in numpy too: what the C kernel saves.
        Row("as evaluate runs it, numpy only, batch 1000", child["numpy only"] * 1e3, "ms"),
        Row("as evaluate runs it, numpy only / GEMM limit: time", child["numpy only"] / limit, "x"),
        Row("numpy only, batch 1000, one thread", child["numpy only, one thread"] * 1e3, "ms"),
    ]
    inked = np.count_nonzero(images) / images.size
    done = 2.0 * n * (inked * params["W1"].size + params["W2"].size + params["W3"].size)
    sec.notes.append(
        f"first layer: {'the C kernel' if child['kernel'] else 'numpy (no C kernel here)'};"
        f" {inked:.1%} of the test pixels are inked, so the kernel's pass does"
        f" {done / 1e6:.0f} of the {flops(params, n) / 1e6:.0f} MFLOP the limit is figured for"
    )
    bare = min(t[f"matmuls {bs}"] for bs in BATCH_SIZES if bs >= 1000)
    sec.rows += [
        Row("numpy's 3 matmuls alone, float input, BLAS threads", bare * 1e3, "ms"),
        Row("numpy's 3 matmuls alone / GEMM limit: time", bare / limit, "x"),
        Row("as evaluate runs it / numpy's 3 matmuls alone: time", fast_child / bare, "x"),
    ]
    for name in rivals:  # how near a tuned engine gets to the limit on this machine
        best = min(t[f"{name} {bs}"] for bs in BATCH_SIZES if bs >= 1000)
        sec.rows.append(Row(f"{name}, best of batch >= 1000", best * 1e3, "ms"))
        sec.rows.append(Row(f"{name} (batch >= 1000) / GEMM limit: time", best / limit, "x"))
    sec.notes.append("in-process times: best of 9, interleaved; child process: best of 9")
    acc = float(np.mean(net.classify(images, 100)[0] == labels))
    sec.notes.append(f"classify accuracy {acc:.4f}")


def bench_train(sec: Section, spawner: Spawner) -> None:
    """Training throughput: one epoch over the training split, plain and augmented."""
    if not has_module("mnist_infer.train"):
        raise Skip("train not available")
    from mnist_infer.train import TrainOptions, train

    ensure_cache(spawner)
    for augment in (False, True):
        opts = TrainOptions(epochs=1, augment=augment)
        out = WORK / "train-bench.npz"
        res = train(opts, out, cache_dir=CACHE, force=True, evaluate_test=False)
        (ep,) = res.history
        name = "augmented" if augment else "plain"
        sec.rows += [
            Row(
                f"train, one epoch ({name}, batch 100, adam)",
                ep.seconds,
                "s",
                TARGETS["epoch"] if not augment else None,
            ),
            Row(f"train throughput ({name})", ep.images_per_second, "images/s"),
        ]
    sec.notes.append(f"{res.metadata['train_images']} training images per epoch")


def write_pngs(images: np.ndarray) -> Path:
    """The test digits as 28x28 greyscale PNG files (made once)."""
    from PIL import Image

    done = PNG_DIR / ".complete"
    if done.is_file() and done.read_text() == str(len(images)):
        return PNG_DIR
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.reshape(28, 28)).save(PNG_DIR / f"{i:05d}.png")
    done.write_text(str(len(images)))
    return PNG_DIR


def _naive_png_loop(folder: Path, params: dict[str, np.ndarray]) -> int:
    """Baseline: open each file with Pillow and run the textbook predict on it alone."""
    from PIL import Image

    count = 0
    for p in sorted(folder.glob("*.png")):
        x = np.asarray(Image.open(p).convert("L"), np.float32).reshape(1, 784) / 255.0
        tb.predict(params, x).argmax(axis=1)
        count += 1
    return count


def _predict_accuracy(stdout: str, labels: np.ndarray) -> float:
    """Share of JSON lines {"path": ".../01234.png", "digit": d} whose digit is the label."""
    hits = total = 0
    for line in stdout.splitlines():
        rec = json.loads(line)
        total += 1
        hits += rec["digit"] == labels[int(Path(rec["path"]).stem)]
    if total != len(labels):
        raise RuntimeError(f"predict printed {total} results for {len(labels)} files")
    return hits / total


def bench_predict(sec: Section, spawner: Spawner) -> None:
    """Predict: `mnist-infer predict DIR` on 10,000 PNG files."""
    images, labels = test_split()
    weights = weights_file()
    help_text = need_command("predict")
    folder = write_pngs(images)
    variants = {"predict DIR": [CLI, "predict", "--weights", str(weights), "--json", str(folder)]}
    if "--no-preprocess" in help_text:
        variants["predict DIR --no-preprocess"] = [*variants["predict DIR"], "--no-preprocess"]
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(3):
        for name, argv in variants.items():
            r = spawner.run(argv, keep=None)
            if r["rc"] != 0:
                raise RuntimeError(f"{name} exited {r['rc']}: {r['stderr'].strip()[-300:]}")
            runs[name].append(r)
    params = tb.init_network(str(weights))
    t_naive = median_time(lambda: _naive_png_loop(folder, params), repeat=1, warmup=0)
    n = len(images)
    sec.rows.append(Row("naive loop: Pillow + textbook predict per file", n / t_naive, "images/s"))
    for name, rs in runs.items():
        t = statistics.median(r["seconds"] for r in rs)
        rss = max(r["maxrss_bytes"] for r in rs) / 2**20
        sec.rows += [
            Row(f"{name}, whole process", n / t, "images/s"),
            Row(f"{name}: peak RSS", rss, "MiB"),
            Row(f"{name} / naive loop: time", t / t_naive, "x"),
        ]
        sec.notes.append(f"{name}: accuracy {_predict_accuracy(rs[0]['stdout'], labels):.4f}")
    sec.notes.append("peak RSS is the largest single process (decoding workers are not summed)")
    _one_image(sec, spawner, folder / "00000.png", weights)


def _one_image(sec: Section, spawner: Spawner, png: Path, weights: Path) -> None:
    """One image, process start to answer, against starting Python with numpy and Pillow."""
    floor = "import numpy, PIL.Image"
    commands = {
        floor: [sys.executable, "-c", floor],
        "predict one PNG": [CLI, "predict", "--weights", str(weights), str(png)],
    }
    secs = {
        k: statistics.median(r["seconds"] for r in rs)
        for k, rs in _process_runs(spawner, commands).items()
    }
    sec.rows += [
        Row(f"python -c '{floor}'", secs[floor] * 1e3, "ms"),
        Row("predict one PNG, whole process", secs["predict one PNG"] * 1e3, "ms"),
        Row(f"predict one PNG / `{floor}`: time", secs["predict one PNG"] / secs[floor], "x"),
    ]


SECTIONS = {
    "data": bench_data,
    "process": bench_process,
    "forward": bench_forward,
    "train": bench_train,
    "predict": bench_predict,
}


# --- report ------------------------------------------------------------------------


def run_section(name: str, fn: Callable[[Section, Spawner], None], spawner: Spawner) -> Section:
    sec = Section(title=(fn.__doc__ or name).strip())
    print(f"\n== {sec.title}", flush=True)
    t0 = time.perf_counter()
    try:
        fn(sec, spawner)
    except Skip as e:
        sec.status, sec.reason = "skipped", str(e)
        print(f"  skipped: {e}")
    except Exception as e:
        sec.status, sec.reason = "failed", f"{type(e).__name__}: {e}"
        print(f"  failed: {sec.reason}")
    for row in sec.rows:
        print(format_row(row))
    for note in sec.notes:
        print(f"  {note}")
    print(f"  [{time.perf_counter() - t0:.1f} s]", flush=True)
    return sec


def format_row(row: Row) -> str:
    value = f"{row.value:,.0f}" if abs(row.value) >= 1000 else f"{row.value:.3g}"
    verdict = ""
    if row.target is not None:
        verdict = f"  target <= {row.target}: {'ok' if row.ok else 'MISSED'}"
    return f"  {row.name:<52} {value:>10} {row.unit:<9}{verdict}"


def print_verdicts(sections: dict[str, Section]) -> None:
    """The targets, and which sections did not run."""
    print("\n== Summary")
    for name, sec in sections.items():
        for row in sec.rows:
            if row.target is not None:
                print(format_row(row))
        if sec.status != "ok":
            print(f"  {sec.status}: {name}: {sec.reason}")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": f"{blas.get('name', '?')} {blas.get('version', '')}".strip(),
        "platform": platform.platform(),
    }


def main(names: list[str]) -> None:
    """Run the named sections (default: all); only a full run writes results.json."""
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"Benchmark data: {find_shared() or 'not found'}")
    spawner = Spawner()
    t0 = time.perf_counter()
    try:
        sections = {
            name: run_section(name, fn, spawner)
            for name, fn in SECTIONS.items()
            if not names or name in names
        }
    finally:
        spawner.close()
    total = time.perf_counter() - t0
    print_verdicts(sections)
    if names:
        print(f"\nDone in {total:.0f} s (partial run: {RESULTS.name} not written)")
        return
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "seconds": round(total, 1),
        "sections": {
            k: {**asdict(s), "rows": [{**asdict(r), "ok": r.ok} for r in s.rows]}
            for k, s in sections.items()
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWrote {RESULTS.relative_to(REPO)} in {total:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
