"""Load test of `thyronet serve` on this machine only (127.0.0.1).

    python benchmarks/load_test.py RUN_OR_CKPT [--requests 500] [--concurrency 8] [--image FILE]
                                   [--workers N] [--sample-every 100]

Starts the server (``--workers`` processes behind one port) as a child process on a free loopback
port, sends a bounded number of prediction requests from a thread pool, and prints p50/p95
latency, errors, throughput, the processor and the resident memory of the server and its
workers together, sampled every ``--sample-every`` requests: a soak (e.g. 2,000 requests) shows
whether it grows after warm-up (the first tenth of the requests). Not a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from thyronet.training.provenance import processor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), in MiB."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("Pid", -1)) == pid or int(fields.get("PPid", -1)) == pid:
            total += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image", default="../shared/data/ddti/100_1.jpg")
    parser.add_argument("--no-explain", action="store_true", help="serve without Grad-CAM")
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    parser.add_argument("--sample-every", type=int, default=100, help="requests between memory samples")
    args = parser.parse_args()
    port = free_port()
    from thyronet.apps.access import Accounts

    state = Path(tempfile.mkdtemp(prefix="thyronet-load-"))  # a throw-away account store: every call authenticates
    Accounts(state).add_user("load-test", "viewer")
    auth = {"Authorization": f"Bearer {Accounts(state).create_token('load-test', 'load-test')}"}
    command = [sys.executable, "-m", "thyronet", "serve", args.checkpoint, "--port", str(port), "--workers", str(args.workers),
               "--state", str(state)]
    server = subprocess.Popen(command + (["--no-explain"] if args.no_explain else []), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/ready", headers=auth, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            print("server did not start:", server.stderr.read().decode()[-2000:], file=sys.stderr)
            return 2
        payload = Path(args.image).read_bytes()
        rss_idle = tree_rss_mib(server.pid)
        samples: list[tuple[int, float]] = []

        def one(index: int) -> tuple[float, int]:
            start = time.perf_counter()
            try:
                response = httpx.post(f"{base}/api/v1/predict", files={"file": ("u.jpg", payload, "image/jpeg")},
                                      headers=auth, timeout=60)
                status = response.status_code
            except httpx.HTTPError:
                status = -1
            if index % args.sample_every == 0:
                samples.append((index, tree_rss_mib(server.pid)))
            return (time.perf_counter() - start) * 1000, status

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - started
        latencies = np.array([r[0] for r in results])
        errors = sum(1 for r in results if r[1] != 200)
        print(f"processor: {processor()}; {args.workers} worker(s); {args.requests} requests, concurrency "
              f"{args.concurrency}, Grad-CAM {'off' if args.no_explain else 'on'}")
        print(f"latency p50 {np.percentile(latencies, 50):.0f} ms, p95 {np.percentile(latencies, 95):.0f} ms, "
              f"max {latencies.max():.0f} ms; errors {errors}; throughput {args.requests / wall:.1f} req/s")
        samples.sort()
        warm = [rss for i, rss in samples if i >= args.requests // 10]
        growth = (warm[-1] / warm[0] - 1) * 100 if len(warm) > 1 else float("nan")
        print(f"server memory (all its processes): {rss_idle:.0f} MiB after start; after warm-up {warm[0] if warm else float('nan'):.0f} "
              f"MiB, at the end {tree_rss_mib(server.pid):.0f} MiB: growth after warm-up {growth:+.1f}%; samples (request, MiB): "
              + ", ".join(f"{i}:{rss:.0f}" for i, rss in samples))
        return 0 if errors == 0 else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
