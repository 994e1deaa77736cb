"""`mnist-infer serve` under load: serve_load.py's figures as rows of the report.

Two parts. The default server (one process per CPU) with 8 keep-alive clients. Then one
process against 32 keep-alive clients, with the same work behind FastAPI + uvicorn and
waitress (serve_alternatives.py; skipped when the `bench` extra is not installed), taking
turns in ROUNDS rounds so that each round's figures share the machine's weather; the ratio
of p99 latencies is taken within each round.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys

from common import BENCH, Row, Section, Spawner, child_env, need_command

ROUNDS = 3
OTHERS = {
    "uvicorn": ("fastapi", "uvicorn"),  # with httptools and uvloop when installed
    "uvicorn-h11": ("fastapi", "uvicorn"),
    "waitress": ("waitress",),
}


def load(*args: str) -> dict:
    argv = [sys.executable, str(BENCH / "serve_load.py"), *args]
    p = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
    if p.returncode != 0:
        raise RuntimeError(f"serve_load.py exited {p.returncode}: {p.stderr.strip()[-300:]}")
    return json.loads(p.stdout)


def bench_serve(sec: Section, spawner: Spawner) -> None:
    """Serve: 8 keep-alive clients in their own process POST a 28x28 PNG for 10 s; then one
    process and 32 clients, against FastAPI + uvicorn and waitress doing the same work."""
    need_command("serve")
    r = load("--clients", "8", "--seconds", "10")
    target = r["target"]
    sec.rows += [
        Row("requests/s, 8 clients", r["requests_per_s"], "req/s", target["requests_per_s"], True),
        Row("latency p50", r["p50_ms"], "ms"),
        Row("latency p99", r["p99_ms"], "ms", target["p99_ms"]),
        Row("failed requests", r["failures"], "", 0),
        Row("server CPU per request", r["server_cpu_ms_per_request"], "ms"),
        Row("server peak RSS after load", max(r["server_peak_rss_mib"]["after_load"]), "MiB"),
        Row("stop on SIGTERM", r["stop_s"], "s", 2.0),
    ]
    servers = ["serve"] + [
        name
        for name, modules in OTHERS.items()
        if all(importlib.util.find_spec(m) is not None for m in modules)
    ]
    if len(servers) == 1:
        sec.notes.append("uvicorn and waitress not installed (pip install -e '.[bench]'): skipped")
    runs: dict[str, list[dict]] = {s: [] for s in servers}
    for _ in range(ROUNDS):
        for s in servers:
            args = ["--clients", "32", "--seconds", "5", "--server", s]
            runs[s].append(load(*args, "--workers", "1") if s == "serve" else load(*args))
    for s in servers:
        rs = runs[s]
        label = "serve --workers 1" if s == "serve" else f"{s} (same work)"
        sec.rows += [
            Row(f"{label}, 32 clients: requests/s", _median(rs, "requests_per_s"), "req/s"),
            Row(f"{label}, 32 clients: p99", _median(rs, "p99_ms"), "ms"),
            Row(f"{label}, 32 clients: failed", sum(x["failures"] for x in rs), "", 0),
        ]
    if "uvicorn" in runs:
        ratios = [
            a["p99_ms"] / b["p99_ms"] for a, b in zip(runs["serve"], runs["uvicorn"], strict=True)
        ]
        sec.rows.append(
            Row("p99 serve / uvicorn, median of rounds", statistics.median(ratios), "x", 1.0)
        )
        sec.notes.append("p99 serve / uvicorn by round: " + ", ".join(f"{x:.2f}" for x in ratios))


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(x[key] for x in runs), 2)
