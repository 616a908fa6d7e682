"""What makes a run reproducible: versions, git commit, seed, command line and a data fingerprint."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from thyronet.data.records import ImageRecord

PACKAGES = ("thyronet", "torch", "torchvision", "lightning", "torchmetrics", "numpy", "scikit-learn", "opencv-python-headless", "pydicom",
            "flwr")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    """The commit of the thyronet source tree, and whether it had uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def data_fingerprint(records: Sequence[ImageRecord]) -> str:
    """SHA-256 over every record's name, case, label, outline count and file bytes (and the case
    files beside DDTI images, which hold the labels)."""
    digest = hashlib.sha256()
    seen_files: set[Path] = set()
    for record in sorted(records, key=lambda r: (r.case_id, r.key)):
        digest.update(f"{record.key}|{record.case_id}|{record.label}|{len(record.outlines)}\n".encode())
        files = [record.path]
        if record.source == "ddti":
            files.append(record.path.with_name(f"{record.case_id}.xml"))
        for file in files:
            if file not in seen_files and file.exists():
                seen_files.add(file)
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_bf16() -> str | None:
    """The CPU's bf16 instructions (``AMX-BF16``, ``AVX512-BF16``) or None: bf16 autocast is
    measured 2x faster than fp32 with them, and emulated (slower) without."""
    info = _cpuinfo()
    return "AMX-BF16" if " amx_bf16" in info else "AVX512-BF16" if " avx512_bf16" in info else None


def processor() -> str:
    """The CPU's model name and its bf16 instructions: every speed figure depends on both."""
    info = _cpuinfo()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    return f"{name}, {cpu_bf16() or 'no bf16 instructions'}"


def provenance(seed: int, records: Sequence[ImageRecord]) -> dict[str, Any]:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "seed": seed,
        "versions": package_versions(),
        "git": git_commit(),
        "platform": platform.platform(),
        "processor": processor(),
        "data_fingerprint": data_fingerprint(records),
        "images": len(records),
    }
