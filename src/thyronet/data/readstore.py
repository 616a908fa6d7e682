"""The reading store: the images that arrive, the model's proposal for each, the radiologist's
confirmed read and its signature, and outcomes (cytology, pathology) attached later; and the same
folder read as a dataset, so that the hospital's signed reads train its next model.

A store is a folder: ``reads.sqlite`` (one row per version of a read, one per outcome) and
``images/`` (each image as it arrived), owner-only, since both hold patient data. A read moves
through the states *proposed* (the model has answered), *in progress* (a radiologist has changed
something) and *signed*. A signed version is never changed again: an amendment is a new version
that names the one it replaces, and the worklist shows the newest. Outcomes belong to the read
(every version), not to one version.

As a dataset (:func:`read_store`), each read's newest signed version is one record: its confirmed
outline, the confirmed categories in DDTI's descriptor vocabulary where ACR's value says which
(``data.tirads.to_descriptors``), and a label only where an outcome gives one: Bethesda II benign,
V and VI malignant, surgical pathology benign or malignant; Bethesda I, III and IV say nothing
about the nodule, so such reads are unlabelled. The radiologist's own TI-RADS level is never made
a label: the model would learn to copy the reader, not the disease.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thyronet.data.records import BENIGN, MALIGNANT, Collection, ImageRecord
from thyronet.data.tirads import Assessment, Recommendation, assess, normalise_values, recommend, to_descriptors
from thyronet.errors import DataIssue, ThyronetError

DATABASE = "reads.sqlite"
IMAGES = "images"
STATES = ("proposed", "in progress", "signed")
BETHESDA = {"I": None, "II": BENIGN, "III": None, "IV": None, "V": MALIGNANT, "VI": MALIGNANT}
PATHOLOGY = {"benign": BENIGN, "malignant": MALIGNANT}
SORTS = {"arrival": "arrived DESC", "suspicion": "suspicion DESC", "uncertainty": "uncertainty DESC"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS reads (
    id TEXT PRIMARY KEY, read TEXT NOT NULL, version INTEGER NOT NULL, replaces TEXT, state TEXT NOT NULL,
    arrived TEXT NOT NULL, updated TEXT NOT NULL, image TEXT NOT NULL, image_sha256 TEXT NOT NULL,
    study_uid TEXT, series_uid TEXT, sop_uid TEXT, accession TEXT, patient_name TEXT, patient_id TEXT,
    spacing TEXT, model TEXT NOT NULL, proposal TEXT NOT NULL, confirmed TEXT NOT NULL,
    suspicion REAL, uncertainty REAL, signed_by TEXT, signed_at TEXT, UNIQUE (read, version));
CREATE TABLE IF NOT EXISTS outcomes (
    read TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL);
"""


class ReadError(ThyronetError):
    """A request the store refuses (unknown read, a signed version changed, a bad value); ``status``
    is the HTTP status the service answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Source:
    """What is known of an image when it arrives (from its DICOM header, where it is one)."""

    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    accession: str | None = None
    patient_name: str | None = None
    patient_id: str | None = None
    spacing: tuple[float, float] | None = None  # (row, column) mm


@dataclass(frozen=True)
class Read:
    """One version of a read. ``proposal`` is what the model answered (probability, descriptors,
    ACR categories, outline, calipers, model); ``confirmed`` what the radiologist has confirmed or
    changed so far (it starts as the proposal's ``outline``, ``calipers`` and ``categories``)."""

    id: str
    read: str
    version: int
    replaces: str | None
    state: str
    arrived: str
    updated: str
    image: Path
    source: Source
    model: dict[str, Any]
    proposal: dict[str, Any]
    confirmed: dict[str, Any]
    suspicion: float | None
    uncertainty: float | None
    signed_by: str | None = None
    signed_at: str | None = None
    outcomes: list[dict[str, str]] = field(default_factory=list)

    @property
    def signed(self) -> bool:
        return self.state == "signed"

    def max_diameter_mm(self) -> float | None:
        """The confirmed long axis in mm (None without calipers or calibration)."""
        return caliper_mm((self.confirmed.get("calipers") or {}).get("long"), self.source.spacing)

    def assessment(self) -> tuple[Assessment, Recommendation]:
        """ACR TI-RADS from the confirmed categories and the confirmed size."""
        assessment = assess(self.confirmed.get("categories") or {})
        return assessment, recommend(assessment, self.max_diameter_mm())

    def changed(self) -> list[str]:
        """Which of the model's proposals the radiologist changed: ``categories.<name>``,
        ``outline`` and ``calipers``."""
        proposed = self.proposal.get("categories") or {}
        confirmed = self.confirmed.get("categories") or {}
        names = [f"categories.{name}" for name in dict.fromkeys([*proposed, *confirmed])
                 if sorted(proposed.get(name) or []) != sorted(confirmed.get(name) or [])]
        return names + [part for part in ("outline", "calipers") if self.proposal.get(part) != self.confirmed.get(part)]

    def label(self) -> int | None:
        """The label the outcomes give (see the module's docstring): the newest surgical pathology,
        else the newest cytology; None without either."""
        for kind, table in (("pathology", PATHOLOGY), ("bethesda", BETHESDA)):
            found = [o["value"] for o in self.outcomes if o["kind"] == kind]
            if found:
                return table[found[-1]]
        return None


def caliper_mm(segment: Sequence[Sequence[float]] | None, spacing: tuple[float, float] | None) -> float | None:
    """A caliper's length in mm: ((x0, y0), (x1, y1)) in image pixels and the (row, column) spacing."""
    if not segment or spacing is None:
        return None
    (x0, y0), (x1, y1) = segment
    return float(((x1 - x0) * spacing[1]) ** 2 + ((y1 - y0) * spacing[0]) ** 2) ** 0.5


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _owner_only(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class ReadStore:
    """The reads of one store folder (created with owner-only permissions where it does not exist)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = _owner_only(Path(folder))
        _owner_only(self.folder / IMAGES)
        self.database = self.folder / DATABASE
        with self._db() as db:
            db.executescript(SCHEMA)
        os.chmod(self.database, 0o600)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.database, isolation_level="IMMEDIATE")
        connection.row_factory = sqlite3.Row
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def add(self, image: bytes, suffix: str, source: Source, proposal: Mapping[str, Any], model: Mapping[str, Any]) -> Read:
        """A new read of an arrived image with the model's proposal (state *proposed*)."""
        read_id = uuid.uuid4().hex[:16]
        name = f"{read_id}{suffix.lower() if suffix.lower() in ('.dcm', '.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff') else '.bin'}"
        path = self.folder / IMAGES / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(image)
        probability = proposal.get("probability")
        confirmed = {part: proposal.get(part) for part in ("outline", "calipers", "categories")}
        now = _now()
        with self._db() as db:
            db.execute(
                "INSERT INTO reads VALUES (?, ?, 1, NULL, 'proposed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (f"{read_id}-1", read_id, now, now, name, hashlib.sha256(image).hexdigest(), source.study_uid, source.series_uid,
                 source.sop_uid, source.accession, source.patient_name, source.patient_id,
                 json.dumps(source.spacing), json.dumps(dict(model)), json.dumps(dict(proposal)), json.dumps(confirmed),
                 probability, None if probability is None else 1 - 2 * abs(probability - 0.5)))
        return self.get(f"{read_id}-1")

    def get(self, version_id: str) -> Read:
        with self._db() as db:
            row = db.execute("SELECT * FROM reads WHERE id = ?", (version_id,)).fetchone()
            if row is None:
                raise ReadError(f"no read {version_id!r}", 404)
            outcomes = db.execute("SELECT kind, value, recorded_by, recorded_at FROM outcomes WHERE read = ? ORDER BY rowid",
                                  (row["read"],)).fetchall()
        return self._read(row, [dict(o) for o in outcomes])

    def _read(self, row: sqlite3.Row, outcomes: list[dict[str, str]]) -> Read:
        spacing = json.loads(row["spacing"]) if row["spacing"] else None
        source = Source(row["study_uid"], row["series_uid"], row["sop_uid"], row["accession"], row["patient_name"],
                        row["patient_id"], tuple(spacing) if spacing else None)
        return Read(row["id"], row["read"], row["version"], row["replaces"], row["state"], row["arrived"], row["updated"],
                    self.folder / IMAGES / row["image"], source, json.loads(row["model"]), json.loads(row["proposal"]),
                    json.loads(row["confirmed"]), row["suspicion"], row["uncertainty"], row["signed_by"], row["signed_at"],
                    outcomes)

    def worklist(self, state: str | None = None, sort: str = "arrival") -> list[Read]:
        """The newest version of every read, filtered by state, sorted by arrival (newest first),
        suspicion (the model's probability, highest first) or uncertainty (closest to 0.5 first)."""
        if state is not None and state not in STATES:
            raise ReadError(f"unknown state {state!r} (expected one of {list(STATES)})")
        if sort not in SORTS:
            raise ReadError(f"unknown sort {sort!r} (expected one of {list(SORTS)})")
        query = ("SELECT * FROM reads r WHERE version = (SELECT MAX(version) FROM reads WHERE read = r.read)"
                 + (" AND state = ?" if state else "") + f" ORDER BY {SORTS[sort]}, arrived DESC")
        return self._query(query, (state,) if state else ())

    def signed(self) -> list[Read]:
        """The newest signed version of every read that has one (an amendment in progress leaves
        the version it amends in force), newest arrival first."""
        return self._query("SELECT * FROM reads r WHERE state = 'signed' AND version = "
                           "(SELECT MAX(version) FROM reads WHERE read = r.read AND state = 'signed') ORDER BY arrived DESC")

    def _query(self, query: str, parameters: tuple = ()) -> list[Read]:
        """The versions a query selects, each with its read's outcomes."""
        with self._db() as db:
            rows = db.execute(query, parameters).fetchall()
            outcomes: dict[str, list[dict[str, str]]] = {}
            for o in db.execute("SELECT read, kind, value, recorded_by, recorded_at FROM outcomes ORDER BY rowid"):
                outcomes.setdefault(o["read"], []).append({k: o[k] for k in ("kind", "value", "recorded_by", "recorded_at")})
        return [self._read(row, outcomes.get(row["read"], [])) for row in rows]

    def confirm(self, version_id: str, changes: Mapping[str, Any]) -> Read:
        """Confirm or change the outline, calipers or categories of a version not yet signed."""
        read = self.get(version_id)
        if read.signed:
            raise ReadError(f"read {version_id} is signed: amend it to change it", 409)
        unknown = set(changes) - {"outline", "calipers", "categories"}
        if unknown:
            raise ReadError(f"unknown fields {sorted(unknown)} (expected outline, calipers, categories)")
        confirmed = {**read.confirmed, **changes}
        if "categories" in changes:
            try:
                confirmed["categories"] = {name: list(values) for name, values in
                                           normalise_values(changes["categories"] or {}).items()}
            except ValueError as error:
                raise ReadError(str(error)) from None
        _check_geometry(confirmed)
        with self._db() as db:
            db.execute("UPDATE reads SET confirmed = ?, state = 'in progress', updated = ? WHERE id = ? AND state != 'signed'",
                       (json.dumps(confirmed), _now(), version_id))
        return self.get(version_id)

    def sign(self, version_id: str, user: str) -> Read:
        """Sign a version: from now on it never changes. A read needs a complete ACR assessment."""
        read = self.get(version_id)
        if read.signed:
            raise ReadError(f"read {version_id} is already signed", 409)
        assessment, _ = read.assessment()
        if not assessment.complete:
            raise ReadError(f"read {version_id}: {assessment.note()}; confirm every category before signing")
        now = _now()
        with self._db() as db:
            db.execute("UPDATE reads SET state = 'signed', signed_by = ?, signed_at = ?, updated = ? WHERE id = ? AND state != 'signed'",
                       (user, now, now, version_id))
        return self.get(version_id)

    def amend(self, version_id: str) -> Read:
        """A new version of a signed read (in progress, the signed values to start from), naming the one it replaces."""
        read = self.get(version_id)
        if not read.signed:
            raise ReadError(f"read {version_id} is not signed: change it directly", 409)
        newest = self.worklist_version(read.read)
        if newest.id != read.id:
            raise ReadError(f"read {version_id} has been amended already (by {newest.id})", 409)
        new_id, now = f"{read.read}-{read.version + 1}", _now()
        with self._db() as db:
            db.execute("INSERT INTO reads SELECT ?, read, ?, id, 'in progress', arrived, ?, image, image_sha256, study_uid, series_uid, "
                       "sop_uid, accession, patient_name, patient_id, spacing, model, proposal, confirmed, suspicion, uncertainty, "
                       "NULL, NULL FROM reads WHERE id = ?", (new_id, read.version + 1, now, version_id))
        return self.get(new_id)

    def worklist_version(self, read: str) -> Read:
        with self._db() as db:
            row = db.execute("SELECT id FROM reads WHERE read = ? ORDER BY version DESC LIMIT 1", (read,)).fetchone()
        if row is None:
            raise ReadError(f"no read {read!r}", 404)
        return self.get(row["id"])

    def add_outcome(self, version_id: str, kind: str, value: str, user: str) -> Read:
        """Attach cytology (``bethesda``: I-VI) or surgical pathology (``pathology``: benign or malignant) to a read."""
        value = value.strip()
        if kind == "bethesda":
            value = value.upper()
            if value not in BETHESDA:
                raise ReadError(f"Bethesda category {value!r}: expected one of {list(BETHESDA)}")
        elif kind == "pathology":
            value = value.lower()
            if value not in PATHOLOGY:
                raise ReadError(f"pathology {value!r}: expected benign or malignant")
        else:
            raise ReadError(f"outcome kind {kind!r}: expected bethesda or pathology")
        read = self.get(version_id)
        with self._db() as db:
            db.execute("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?)", (read.read, kind, value, user, _now()))
        return self.get(version_id)


def _check_geometry(confirmed: Mapping[str, Any]) -> None:
    outline = confirmed.get("outline")
    if outline is not None and (not isinstance(outline, list) or len(outline) < 3
                                or not all(isinstance(p, list | tuple) and len(p) == 2 for p in outline)):
        raise ReadError("outline: expected a list of at least 3 [x, y] points")
    calipers = confirmed.get("calipers")
    if calipers is not None:
        if not isinstance(calipers, dict) or set(calipers) - {"long", "short"}:
            raise ReadError("calipers: expected {'long': [[x0, y0], [x1, y1]], 'short': [[x0, y0], [x1, y1]]}")
        for name, segment in calipers.items():
            if segment is not None and (len(segment) != 2 or not all(len(p) == 2 for p in segment)):
                raise ReadError(f"calipers.{name}: expected [[x0, y0], [x1, y1]]")


def is_store_folder(path: Path) -> bool:
    return path.is_dir() and (path / DATABASE).is_file()


def read_store(root: Path) -> Collection:
    """The store's signed reads as a dataset (see the module's docstring); a read whose image is
    missing is an issue naming it."""
    store = ReadStore(root)
    images, issues = [], []
    for read in store.signed():
        if not read.image.is_file():
            issues.append(DataIssue(read.image, f"read {read.id}: its image is missing"))
            continue
        outline = read.confirmed.get("outline")
        attributes: dict[str, str | None] = dict(to_descriptors(read.confirmed.get("categories") or {}))
        assessment, _ = read.assessment()
        attributes["acr_level"] = assessment.level
        images.append(ImageRecord(read.image, read.read, read.label(), "reads",
                                  (tuple((float(x), float(y)) for x, y in outline),) if outline else (), attributes))
    return Collection(root, "reads", images, issues)

