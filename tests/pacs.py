"""A real PACS for the tests: Orthanc on loopback with its storage in the test's folder (Debian's
orthanc; the tests that need it are skipped without), and what it holds."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pydicom
import pytest

ORTHANC = shutil.which("Orthanc")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.3)
    return None


def run_orthanc(tmp_path: Path):
    """(For the ``orthanc`` fixture.) A PACS of its own: Orthanc with its config and storage in the test's folder, on loopback."""
    dicom_port, http_port = free_port(), free_port()
    storage = tmp_path / "orthanc-db"
    config = {"Name": "thyronet-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
              "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "Plugins": [], "StableAge": 1}
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen([ORTHANC, str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{http_port}"
    if not wait_until(lambda: httpx.get(f"{base}/system", timeout=2).status_code == 200):
        process.kill()
        pytest.fail(f"Orthanc did not start: {process.stderr.read().decode()[-2000:]}")
    yield base, dicom_port
    process.terminate()
    process.wait(timeout=30)


def modalities(base: str) -> list[str]:
    return sorted(httpx.get(f"{base}/instances/{uid}/simplified-tags", timeout=5).json()["Modality"]
                  for uid in httpx.get(f"{base}/instances", timeout=5).json())


def instances(base: str, modality: str) -> list[pydicom.Dataset]:
    """The data sets of that modality stored in Orthanc."""
    found = []
    for uid in httpx.get(f"{base}/instances", timeout=5).json():
        dataset = pydicom.dcmread(io.BytesIO(httpx.get(f"{base}/instances/{uid}/file", timeout=5).content))
        if dataset.Modality == modality:
            found.append(dataset)
    return found


