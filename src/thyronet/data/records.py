"""The records every data source produces: one :class:`ImageRecord` per image (or DICOM frame)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from thyronet.errors import DataIssue, ThyronetError

BENIGN, MALIGNANT = 0, 1
LABEL_NAMES = {BENIGN: "benign", MALIGNANT: "malignant"}

Point = tuple[float, float]
Polygon = tuple[Point, ...]


@dataclass(frozen=True)
class ImageRecord:
    """One image to classify.

    ``case_id`` is the unit of splitting: all images of a case go to the same side of a split.
    ``label`` is 0 (benign), 1 (malignant) or ``None`` (unlabelled: kept, never used to train).
    ``outlines`` are expert nodule polygons in the image's own pixel coordinates.
    ``attributes`` holds normalised descriptors (composition, echogenicity, margins,
    calcifications, tirads, age, sex) where the source has them.
    """

    path: Path
    case_id: str
    label: int | None
    source: str
    outlines: tuple[Polygon, ...] = ()
    attributes: Mapping[str, str | None] = field(default_factory=dict)
    frame: int | None = None

    @property
    def key(self) -> str:
        """A name unique within a collection: the file name, plus the frame for DICOM series."""
        return self.path.name if self.frame is None else f"{self.path.name}#{self.frame}"


@dataclass
class Collection:
    """The images read from one data source, plus the problems that were skipped."""

    root: Path
    source: str
    images: list[ImageRecord]
    issues: list[DataIssue] = field(default_factory=list)
    case_attributes: dict[str, Mapping[str, str | None]] = field(default_factory=dict)

    @property
    def labelled(self) -> list[ImageRecord]:
        return [r for r in self.images if r.label is not None]

    def case_ids(self) -> list[str]:
        """Every case, including cases whose images could not be read (see ``case_attributes``)."""
        ids = dict.fromkeys(self.case_attributes)
        ids.update(dict.fromkeys(r.case_id for r in self.images))
        return list(ids)

    def case_labels(self) -> dict[str, int | None]:
        """The label of each case (every image of a case shares its case's label)."""
        labels: dict[str, int | None] = {}
        for record in self.images:
            labels.setdefault(record.case_id, record.label)
        return labels

    def subset(self, case_ids: Sequence[str]) -> list[ImageRecord]:
        wanted = set(case_ids)
        return [r for r in self.images if r.case_id in wanted]

    def label_counts(self, unit: str = "image") -> Counter:
        if unit == "image":
            return Counter(LABEL_NAMES.get(r.label, "unlabelled") for r in self.images)
        return Counter(LABEL_NAMES.get(lab, "unlabelled") for lab in self.case_labels().values())


def relabel_by_class(collection: Collection, classes: Sequence[str]) -> Collection:
    """The collection with each image labelled by the index of its ``class`` attribute in
    ``classes`` (a multi-class task, such as BUSI's benign/malignant/normal); images of a class
    not listed become unlabelled."""
    if not any(r.attributes.get("class") for r in collection.images):
        raise ThyronetError(f"{collection.root}: data.classes needs images with a class (a BUSI folder); "
                            f"this {collection.source} source labels benign/malignant only")
    index = {name: position for position, name in enumerate(classes)}
    images = [replace(r, label=index.get(r.attributes.get("class") or "")) for r in collection.images]
    return replace(collection, images=images)
