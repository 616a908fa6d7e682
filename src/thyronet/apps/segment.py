"""``thyronet segment``: the nodule's mask, contour overlay, box and size for each input image.

Everything is in the input's own pixels; sizes also in millimetres where a DICOM file gives its
pixel spacing. Where no nodule is found the row says so and no box is invented.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from thyronet.apps.explain import NODULE_COLOUR
from thyronet.data.imageio import read_image, spacing_mm
from thyronet.data.records import ImageRecord
from thyronet.errors import DataError, DataIssue
from thyronet.inference.segmenter import Segmentation, Segmenter
from thyronet.io import atomic_path, open_atomic


@dataclass
class SegmentRow:
    """One input's result; ``status`` is "nodule found", "no nodule found" or "error: ..."."""

    file: str
    status: str
    x0: int | None = None
    y0: int | None = None
    x1: int | None = None
    y1: int | None = None
    area_px: int | None = None
    width_px: int | None = None
    height_px: int | None = None
    width_mm: float | None = None
    height_mm: float | None = None
    area_mm2: float | None = None
    confidence: float | None = None
    mask: str | None = None
    overlay: str | None = None


def contour_overlay(frame: np.ndarray, result: Segmentation) -> np.ndarray:
    """The frame in colour with the predicted contour and the nodule's box."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if result.found:
        contours, _ = cv2.findContours(result.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, NODULE_COLOUR, 2)
        x0, y0, x1, y1 = result.box
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), (255, 200, 0), 1)
    return rgb


def _save(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def measure(name: str, result: Segmentation, spacing: tuple[float, float] | None) -> SegmentRow:
    """The row for one segmentation: box, area, width/height in pixels (and mm with a spacing)."""
    if not result.found:
        return SegmentRow(name, "no nodule found", area_px=0, confidence=round(result.confidence, 4))
    x0, y0, x1, y1 = result.box
    row = SegmentRow(name, "nodule found", x0, y0, x1, y1, result.area, x1 - x0, y1 - y0, confidence=round(result.confidence, 4))
    if spacing is not None:
        row_mm, col_mm = spacing
        row.width_mm, row.height_mm = round((x1 - x0) * col_mm, 2), round((y1 - y0) * row_mm, 2)
        row.area_mm2 = round(result.area * row_mm * col_mm, 2)
    return row


def segment_records(segmenter: Segmenter, records: Sequence[ImageRecord], out_dir: Path,
                    issues: Sequence[DataIssue] = ()) -> list[SegmentRow]:
    """Segment every record into ``out_dir``: masks, overlays and ``segments.csv``; inputs that
    could not be read (``issues``, and records that fail to decode) get an error row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for record in records:
        name = str(record.path) + (f"#{record.frame}" if record.frame is not None else "")
        stem = record.path.stem + (f"_f{record.frame}" if record.frame is not None else "")
        while stem in used:  # the same file name in two folders
            stem += "-2"
        used.add(stem)
        try:
            frame = read_image(record.path, record.frame)
            spacing = spacing_mm(record.path)
        except DataError as error:
            rows.append(SegmentRow(name, f"error: {error.problem}"))
            continue
        result = segmenter(frame)
        row = measure(name, result, spacing)
        row.mask, row.overlay = f"{stem}_mask.png", f"{stem}_overlay.png"
        _save(result.mask, out_dir / row.mask)
        _save(contour_overlay(frame, result), out_dir / row.overlay)
        rows.append(row)
    rows += [SegmentRow(str(issue.path), f"error: {issue.problem}") for issue in issues]
    with open_atomic(out_dir / "segments.csv") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SegmentRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return rows
