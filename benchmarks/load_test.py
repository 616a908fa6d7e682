"""Load test of `thyronet serve` on this machine only (127.0.0.1).

    python benchmarks/load_test.py RUN_OR_CKPT [--requests 500] [--concurrency 8] [--image FILE]

Starts the server as a child process on a free loopback port, sends a bounded number of
prediction requests from a thread pool, and prints p50/p95 latency, errors, throughput and the
server's peak resident memory. Not a test.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--image", default="../shared/data/ddti/100_1.jpg")
    parser.add_argument("--no-explain", action="store_true", help="serve without Grad-CAM")
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "thyronet", "serve", args.checkpoint, "--port", str(port)]
    server = subprocess.Popen(command + (["--no-explain"] if args.no_explain else []), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            print("server did not start:", server.stderr.read().decode()[-2000:], file=sys.stderr)
            return 2
        payload = Path(args.image).read_bytes()
        rss_idle = peak_rss_mib(server.pid)

        def one(_: int) -> tuple[float, int]:
            start = time.perf_counter()
            try:
                response = httpx.post(f"{base}/api/v1/predict", files={"file": ("u.jpg", payload, "image/jpeg")}, timeout=60)
                status = response.status_code
            except httpx.HTTPError:
                status = -1
            return (time.perf_counter() - start) * 1000, status

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - started
        latencies = np.array([r[0] for r in results])
        errors = sum(1 for r in results if r[1] != 200)
        print(f"{args.requests} requests, concurrency {args.concurrency}, Grad-CAM {'off' if args.no_explain else 'on'}")
        print(f"latency p50 {np.percentile(latencies, 50):.0f} ms, p95 {np.percentile(latencies, 95):.0f} ms, "
              f"max {latencies.max():.0f} ms; errors {errors}; throughput {args.requests / wall:.1f} req/s")
        print(f"server memory: {rss_idle:.0f} MiB after start, peak {peak_rss_mib(server.pid):.0f} MiB")
        return 0 if errors == 0 else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
