"""Load on `mnist-infer serve`: concurrent keep-alive clients POST a 28x28 PNG to /api/predict.

    python bench/serve_load.py [--clients 8] [--seconds 10]

Starts the server as a subprocess (`python -m mnist_infer serve --port 0`) and the load client
in a process of its own (this script with --client), so the two compete for the CPU as a
browser and the server would. Each client thread keeps one HTTP/1.1 connection open and sends
its next request as soon as the answer is in. After one second of warm-up, every request's
time is recorded for --seconds. Prints one JSON dict: requests/s, p50/p99/max latency (ms),
failures, CPU time per request (the server's processes, the client), each server process's
peak memory, how long the server took to stop on SIGTERM, and whether the target was met.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = {"requests_per_s": 400, "p99_ms": 50}


def digit_png() -> bytes:
    """A 28x28 grayscale PNG of a drawn 7 (generated, not taken from MNIST)."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line([(7, 6), (21, 6), (12, 23)], fill=255, width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def client(url: str, clients: int, seconds: float, warmup: float) -> dict[str, object]:
    """Run the load from this process; latencies in ms."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    body = digit_png()
    headers = {"Content-Type": "image/png"}
    start = time.perf_counter()
    t0, t1 = start + warmup, start + warmup + seconds
    times: list[list[float]] = [[] for _ in range(clients)]
    done = [0] * clients  # warm-up included
    failures: list[str] = []

    def run(i: int) -> None:
        mine = times[i]
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        while True:
            a = time.perf_counter()
            if a >= t1:
                break
            try:
                conn.request("POST", "/api/predict", body=body, headers=headers)
                res = conn.getresponse()
                data = res.read()
            except OSError as err:
                failures.append(f"{type(err).__name__}: {err}")
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                continue
            b = time.perf_counter()
            done[i] += 1
            if res.status != 200 or b'"digit":7' not in data:
                failures.append(f"{res.status}: {data[:200]!r}")
            elif a >= t0:
                mine.append((b - a) * 1000)
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = sorted(x for t in times for x in t)
    if not lat:
        return {"requests": 0, "failures": len(failures), "first_failure": failures[:1]}

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 2)

    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(lat),
        "requests_per_s": round(len(lat) / seconds, 1),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": round(lat[-1], 2),
        "failures": len(failures),
        "first_failure": failures[:1],
        "all_requests": sum(done),
        "client_cpu_ms_per_request": round(
            (used.ru_utime + used.ru_stime) * 1000 / max(sum(done), 1), 3
        ),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers(pid: int) -> list[int]:
    """The server's worker processes (its children; Linux)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--workers", help="passed on to `serve --workers` (default: its default)")
    ap.add_argument(
        "--server",
        default="serve",
        choices=["serve", "uvicorn", "uvicorn-h11", "uvicorn-threads", "waitress"],
        help="what to load: `mnist-infer serve`, or the same work on another server"
        " (serve_alternatives.py, one process)",
    )
    ap.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # run as the client
    args = ap.parse_args()
    if args.client:
        print(json.dumps(client(args.client, args.clients, args.seconds, args.warmup)))
        return

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.server == "serve":
        argv = [sys.executable, "-m", "mnist_infer", "serve", "--port", "0"]
        argv += ["--workers", args.workers] if args.workers else []
    else:
        argv = [sys.executable, str(Path(__file__).parent / "serve_alternatives.py"), args.server]
    server = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("Serving on "):
            raise SystemExit(f"the server did not start: {line!r}")
        url = line.split()[2]
        time.sleep(0.5)  # the worker processes are forked after the URL is printed
        pids = [server.pid, *workers(server.pid)]
        rss_idle = [peak_rss_mib(p) for p in pids]
        cpu = sum(cpu_seconds(p) for p in pids)
        load = subprocess.run(
            [sys.executable, __file__, "--client", url, "--clients", str(args.clients),
             "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        result = json.loads(load.stdout)
        cpu = sum(cpu_seconds(p) for p in pids) - cpu
        total = max(result.get("all_requests", 0), 1)
        result["server_cpu_ms_per_request"] = round(cpu * 1000 / total, 3)
        result["server_processes"] = len(pids)
        result["server_peak_rss_mib"] = {
            "idle": rss_idle,
            "after_load": [peak_rss_mib(p) for p in pids],
        }
        a = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        result["exit_code_on_sigterm"] = server.wait(timeout=10)
        result["stop_s"] = round(time.perf_counter() - a, 3)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    result["server"] = args.server
    result["target"] = TARGET
    result["meets_target"] = (
        result.get("failures") == 0
        and result.get("requests_per_s", 0) >= TARGET["requests_per_s"]
        and result.get("p99_ms", float("inf")) <= TARGET["p99_ms"]
    )
    result["cpus"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
