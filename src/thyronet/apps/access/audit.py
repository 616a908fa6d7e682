"""An append-only audit trail: one JSON line per access, upload, sign, user change or model change.

Each line holds the SHA-256 of the line before it (``prev``) and its own (``hash``, over the line
without that field), so editing a line, removing one or reordering them breaks the chain and
:func:`verify_audit_log` names the first line where it breaks. Removing the last lines leaves a
shorter valid chain: keep the last hash ``audit verify`` prints elsewhere (a ticket, a second
machine) to detect that too. Lines carry user names, roles, actions, DICOM UIDs and outcomes;
never a patient's name or ID. The file is appended under an exclusive lock, so several worker
processes write one chain.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from thyronet.errors import ThyronetError

GENESIS = "0" * 64  # the ``prev`` of the first line


def _line_hash(entry: dict) -> str:
    body = {key: value for key, value in entry.items() if key != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _last_hash(handle) -> str:
    """The ``hash`` of the file's last line (the file is open for reading and locked)."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    block = min(size, 4096)
    while block:
        handle.seek(size - block)
        lines = handle.read(block).splitlines()
        if len(lines) > 1 or block == size:
            return json.loads(lines[-1])["hash"] if lines else GENESIS
        block = min(size, block * 2)
    return GENESIS


class AuditLog:
    """The audit trail at ``path`` (created owner-only)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))

    def record(self, user: str | None, role: str | None, action: str, outcome: str, uid: str | None = None,
               detail: str | None = None) -> None:
        """Append one line: UTC time, who (None before login), what, on which DICOM object, how it ended."""
        entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                 "user": user, "role": role, "action": action, "uid": uid, "outcome": outcome}
        if detail:
            entry["detail"] = detail
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                entry["prev"] = _last_hash(handle)
                entry["hash"] = _line_hash(entry)
                handle.seek(0, os.SEEK_END)
                handle.write((json.dumps(entry, sort_keys=True) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class AuditCheck:
    lines: int
    last_hash: str
    problem: str | None  # the first break in the chain, None when intact


def verify_audit_log(path: Path) -> AuditCheck:
    """Walk the chain of ``path``: the number of lines, the last hash, and the first problem found."""
    if not Path(path).is_file():
        raise ThyronetError(f"{path}: no such audit log")
    previous, count = GENESIS, 0
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            try:
                entry = json.loads(text)
            except json.JSONDecodeError:
                return AuditCheck(count, previous, f"line {number}: not a JSON line")
            if entry.get("prev") != previous:
                return AuditCheck(count, previous, f"line {number}: does not follow line {number - 1} "
                                                   "(a line was removed, inserted or reordered)")
            if entry.get("hash") != _line_hash(entry):
                return AuditCheck(count, previous, f"line {number}: its content does not match its hash (edited)")
            previous, count = entry["hash"], number
    return AuditCheck(count, previous, None)
