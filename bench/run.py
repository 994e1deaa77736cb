"""Benchmarks of mnist-infer against the textbook's chapter-3 script; writes bench/results.json.

Run with `make bench` (.venv/bin/python bench/run.py [SECTION ...]). Each section lives in a
module of its own (data, process, forward, training, predicting); common.py holds what they
share. Real data comes from $MNIST_INFER_TEST_DATA, else ../shared beside the repository;
parts that need something missing (data, a command, an optional library) print
`skipped: <why>`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, RESULTS, WORK, Row, Section, Skip, Spawner, find_shared
from data import bench_data
from forward import bench_forward
from predicting import bench_predict
from process import bench_process
from serving import bench_serve
from training import bench_train

SECTIONS = {
    "data": bench_data,
    "process": bench_process,
    "forward": bench_forward,
    "train": bench_train,
    "predict": bench_predict,
    "serve": bench_serve,
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
        sign = ">=" if row.least else "<="
        verdict = f"  target {sign} {row.target}: {'ok' if row.ok else 'MISSED'}"
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
