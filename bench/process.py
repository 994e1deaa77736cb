"""Whole processes: `mnist-infer evaluate` against the textbook's chapter-3 script."""

from __future__ import annotations

import statistics
import sys

from common import (
    BENCH,
    CACHE,
    CLI,
    IMPORTS,
    TARGETS,
    Row,
    Section,
    Skip,
    Spawner,
    accuracy_in,
    ensure_cache,
    need_command,
    process_runs,
    textbook_pickle,
    weights_file,
)


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
    runs = process_runs(spawner, commands)
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
