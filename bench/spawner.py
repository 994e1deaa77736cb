"""Run commands for bench/run.py; report each one's wall time, peak RSS and output.

Linux carries the spawning process's memory high-water mark over into the child's
ru_maxrss (through exec), so children are started from this small process rather than
from the benchmark, which holds the dataset in memory.

Protocol: one JSON job per stdin line {"argv": [...], "cwd": ..., "env": {...}, "keep": N};
one JSON result per stdout line (each output stream cut to `keep` characters; null: all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import IO

KEEP = 4000  # characters of each output stream sent back by default


def _text(f: IO[bytes], keep: int | None) -> tuple[str, int]:
    f.seek(0)
    data = f.read().decode(errors="replace")
    return data[:keep], data.count("\n")


def run(job: dict) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            job["argv"],
            cwd=job.get("cwd"),
            env=job.get("env"),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        keep = job.get("keep", KEEP)
        stdout, lines = _text(out, keep)
        stderr, _ = _text(err, keep)
    return {
        "rc": p.returncode,
        "seconds": seconds,
        "maxrss_bytes": usage.ru_maxrss * 1024,  # Linux reports kilobytes
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "stdout": stdout,
        "stdout_lines": lines,
        "stderr": stderr,
    }


def main() -> None:
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
