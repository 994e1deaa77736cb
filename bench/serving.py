"""`mnist-infer serve` under load: serve_load.py's figures as rows of the report."""

from __future__ import annotations

import json
import subprocess
import sys

from common import BENCH, Row, Section, Spawner, child_env, need_command


def bench_serve(sec: Section, spawner: Spawner) -> None:
    """Serve: 8 keep-alive clients in their own process POST a 28x28 PNG for 10 s."""
    need_command("serve")
    argv = [sys.executable, str(BENCH / "serve_load.py"), "--clients", "8", "--seconds", "10"]
    p = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
    if p.returncode != 0:
        raise RuntimeError(f"serve_load.py exited {p.returncode}: {p.stderr.strip()[-300:]}")
    r = json.loads(p.stdout)
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
