"""The forward pass alone: Network.classify against the textbook loop, ONNX Runtime and
the float32 GEMM limit (a yardstick: how near plain numpy gets to the machine's peak)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import textbook_ch3 as tb
from common import (
    BATCH_SIZES,
    BENCH,
    CACHE,
    Row,
    Section,
    Skip,
    Spawner,
    ensure_cache,
    flops,
    has_module,
    interleaved,
    test_split,
    weights_file,
)


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
        Row("as evaluate runs it (batch >= 1000) / GEMM limit: time", fast_child / limit, "x"),
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
    ]
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
