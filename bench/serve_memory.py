"""Memory of `mnist-infer serve` under concurrent uploads of the largest images it decodes.

    python bench/serve_memory.py [--uploads 8] [--workers N]

Starts the server (default: one process per CPU) and POSTs `--uploads` copies of one image at
once, for each kind of image below, each kind against a fresh server; reports every kind's
peak memory summed over the server's processes, its answers' statuses and how long
the batch took. Memory is sampled every 10 ms as the sum of the processes' resident sizes
(what the machine holds at once), and once more after the batch. The images are generated
(one stroke), decoded in full before the answer. Prints one JSON dict.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from serve_load import workers

ROOT = Path(__file__).resolve().parent.parent


def image(side: int, mode: str, fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new(mode, (side, side), "white" if mode != "RGBA" else (255, 255, 255, 0))
    ImageDraw.Draw(img).line([(side // 4, side // 4), (side // 2, side - 9)], "black", side // 50)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


KINDS = {  # the largest decoded image (4096 x 4096), in the costliest formats; then a bomb
    "4096x4096 RGBA PNG": (4096, "RGBA", "PNG"),
    "4096x4096 RGBA WebP": (4096, "RGBA", "WEBP"),
    "7070x7070 grey PNG": (7070, "L", "PNG"),  # over the pixel limit: refused undecoded
}


def one_kind(body: bytes, uploads: int, extra: list[str]) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_infer", "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        time.sleep(0.5)
        pids = [server.pid, *workers(server.pid)]
        idle = rss_mib(pids)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak.append(rss_mib(pids))

        sampler = threading.Thread(target=sample)
        sampler.start()
        statuses: list[int] = []
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)

        def post() -> None:
            import http.client

            c = http.client.HTTPConnection(host, int(port), timeout=120)
            c.request("POST", "/api/predict", body=body)
            r = c.getresponse()
            r.read()
            statuses.append(r.status)

        start = time.perf_counter()
        threads = [threading.Thread(target=post) for _ in range(uploads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - start
        done.set()
        sampler.join()
        after = rss_mib(pids)
    finally:
        server.terminate()
        server.wait()
    return {
        "processes": len(pids),
        "idle_mib": round(idle, 1),
        "peak_mib": round(max(peak), 1),
        "after_mib": round(after, 1),
        "statuses": sorted(statuses),
        "seconds": round(took, 2),
        "upload_bytes": len(body),
    }


def rss_mib(pids: list[int]) -> float:
    """Resident memory of the processes together (Linux), MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1])
        except OSError:
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uploads", type=int, default=8)
    ap.add_argument("--workers", help="passed on to `serve --workers` (default: its default)")
    args = ap.parse_args()
    extra = ["--workers", args.workers] if args.workers else []
    out = {name: one_kind(image(*kind), args.uploads, extra) for name, kind in KINDS.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
