"""Nodules per second through `thyronet dicom-node`, C-STORE in to SR stored in a PACS, and the
latency of one nodule end to end.

    python benchmarks/dicom_node.py MODEL [--source ../shared/data/ddti] [--images 50]

Starts an Orthanc of its own on loopback (Debian's `orthanc`) and the node in front of MODEL,
writes --images of the source's frames as calibrated ultrasound DICOM files, sends one with
DCMTK's `storescu` and times until its SR is in Orthanc (latency), then sends all in one
association and times until every SR is there (throughput). Not a test: the figures go in
docs/results.md with the processor printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from thyronet.data.dicom import write_ultrasound
from thyronet.data.imageio import read_image
from thyronet.training.provenance import processor

THYRONET = shutil.which("thyronet", path=str(Path(sys.executable).parent)) or shutil.which("thyronet")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reports(base: str) -> int:
    return sum(1 for uid in httpx.get(f"{base}/instances", timeout=10).json()
               if httpx.get(f"{base}/instances/{uid}/simplified-tags", timeout=10).json().get("Modality") == "SR")


def wait_for(base: str, count: int, limit: float = 900.0) -> float:
    start = time.perf_counter()
    while reports(base) < count:
        if time.perf_counter() - start > limit:
            sys.exit(f"only {reports(base)} of {count} reports arrived in {limit:.0f} s")
        time.sleep(0.2)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--source", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--images", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dicom-node-bench-"))
    frames = sorted(args.source.glob("*.jpg"))[: args.images + 1]
    files = [write_ultrasound(work / f"{i:04d}.dcm", read_image(frame), 0.1) for i, frame in enumerate(frames)]
    dicom_port, http_port, node_port = free_port(), free_port(), free_port()
    (work / "orthanc.json").write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"), "DicomAet": "ORTHANC",
        "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "Plugins": []}))
    orthanc = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = subprocess.Popen([THYRONET, "dicom-node", args.model, "--port", str(node_port), "--folder", str(work / "node"),
                             "--send-to", f"127.0.0.1:{dicom_port}:ORTHANC"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(600):
            echo = subprocess.run(["echoscu", "-aec", "THYRONET", "127.0.0.1", str(node_port)], capture_output=True)
            if echo.returncode == 0:
                break
            time.sleep(0.2)
        store = ["storescu", "-aec", "THYRONET", "127.0.0.1", str(node_port)]
        start = time.perf_counter()
        subprocess.run([*store, str(files[0])], check=True, capture_output=True)
        wait_for(base, 1)
        latency = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([*store, *map(str, files[1:])], check=True, capture_output=True)
        wait_for(base, len(files))
        seconds = time.perf_counter() - start
    finally:
        node.terminate()
        orthanc.terminate()
        node.wait(timeout=30)
        orthanc.wait(timeout=30)
    shutil.rmtree(work)
    print(f"processor: {processor()}; {os.cpu_count()} cores; model {args.model}")
    print(f"one nodule, C-STORE in to its SR stored in Orthanc: {latency:.2f} s")
    print(f"{len(files) - 1} nodules in one association: {seconds:.1f} s, {(len(files) - 1) / seconds:.2f} nodules/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
