"""Collecting one data source's records, with the problems it skipped (or the first, when strict)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from thyronet.data.imageio import probe_image, read_image
from thyronet.data.records import Collection, ImageRecord, Polygon
from thyronet.errors import DataError, DataIssue


class SourceReader:
    """Collects records and issues for one source; raises at the first problem when strict."""

    def __init__(self, root: Path, source: str, strict: bool) -> None:
        self.collection = Collection(root=root, source=source, images=[])
        self.strict = strict

    def skip(self, error: DataError) -> None:
        if self.strict:
            raise error
        self.collection.issues.append(DataIssue.from_error(error))

    def add_file(self, path: Path, label: int | None, case_id: str, mask: Path | None = None) -> None:
        """Probe the file and add one record (one per frame for multi-frame DICOM); ``mask``: a
        0/255 nodule mask image of the same size, read into the record's outlines."""
        try:
            frames = probe_image(path)
            outlines = mask_outlines(mask, read_image(path).shape) if mask is not None else ()
        except DataError as error:
            self.skip(error)
            return
        source = self.collection.source
        if frames is None or frames == 1:
            self.collection.images.append(ImageRecord(path, case_id, label, source, outlines))
            return
        for frame in range(frames):
            self.collection.images.append(ImageRecord(path, case_id, label, source, frame=frame))

    def add_record(self, record: ImageRecord) -> None:
        self.collection.images.append(record)


def mask_outlines(mask_path: Path, shape: tuple[int, int]) -> tuple[Polygon, ...]:
    """The outer contours of a 0/255 mask image as polygons; the mask must match the image's size."""
    mask = read_image(mask_path, check=False)
    if mask.shape != shape:
        raise DataError(mask_path, f"mask of {mask.shape[1]}x{mask.shape[0]} pixels for an image of {shape[1]}x{shape[0]}")
    contours, _ = cv2.findContours((mask > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return tuple(tuple((float(x), float(y)) for x, y in c[:, 0]) for c in contours if len(c) >= 3)
