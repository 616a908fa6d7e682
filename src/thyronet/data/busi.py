"""Reader for BUSI (Breast Ultrasound Images; Al-Dhabyani et al., Data in Brief 28, 2020).

Layout: ``labels.csv`` with columns ``path,class,mask`` (class benign, malignant or normal; paths
relative to the folder), each mask a 0/255 tumour mask of its image's size (all zero for normal).

* Labels: benign 0, malignant 1; normal images are kept unlabelled (``label None``, never used to
  train the benign-vs-malignant classifier) with ``attributes["class"] = "normal"``, so that every
  image still counts for summaries and segmentation.
* Masks become the records' outlines (the expert region, as DDTI's polygons).
* Cases: BUSI has no patient identifiers and holds near-identical images. Images whose perceptual
  hashes are within :data:`~thyronet.data.neardup.NEAR_DUPLICATE_BITS` bits share a case, so that a
  case-grouped split keeps each group on one side; ``attributes["duplicates"]`` is the group's size.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from thyronet.data.imageio import read_image
from thyronet.data.neardup import NEAR_DUPLICATE_BITS, near_duplicate_groups, perceptual_hash
from thyronet.data.reader import SourceReader, mask_outlines
from thyronet.data.records import BENIGN, MALIGNANT, Collection, ImageRecord
from thyronet.errors import DataError

MANIFEST = "labels.csv"
BUSI_CLASSES = {"benign": BENIGN, "malignant": MALIGNANT, "normal": None}
COLUMNS = ("path", "class", "mask")


def is_busi_folder(path: Path) -> bool:
    """A folder whose ``labels.csv`` has BUSI's header (path, class, mask)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return all(column in [h.strip().lower() for h in header] for column in COLUMNS)


def read_busi(root: Path, strict: bool = False, max_bits: int = NEAR_DUPLICATE_BITS) -> Collection:
    """Every readable image of a BUSI folder, cases grouped by near-duplicate detection."""
    reader = SourceReader(root, "busi", strict)
    manifest = root / MANIFEST
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    found = []  # (path, class, outlines, hash)
    for line, row in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        kind = row.get("class", "").lower()
        if kind not in BUSI_CLASSES:
            reader.skip(DataError(manifest, f"line {line}: unknown class {row.get('class')!r} (expected benign, malignant or normal)"))
            continue
        path = root / row["path"]
        try:
            image = read_image(path)
            outlines = mask_outlines(root / row["mask"], image.shape) if row.get("mask") else ()
        except DataError as error:
            reader.skip(error)
            continue
        found.append((path, kind, outlines, perceptual_hash(image)))
    groups = near_duplicate_groups([f[3] for f in found], max_bits)
    sizes = Counter(groups)
    for (path, kind, outlines, _), group in zip(found, groups, strict=True):
        case_id = found[group][0].relative_to(root).with_suffix("").as_posix()
        attributes = {"class": kind, "duplicates": str(sizes[group])}
        reader.add_record(ImageRecord(path, case_id, BUSI_CLASSES[kind], "busi", outlines, attributes))
    return reader.collection


def duplicate_report(collection: Collection) -> dict[str, int]:
    """How many images, cases, groups of near-duplicates and images inside such groups; groups
    whose images carry different classes are counted too (a label conflict to look at)."""
    by_case: dict[str, set[str]] = {}
    sizes = Counter(r.case_id for r in collection.images)
    for record in collection.images:
        by_case.setdefault(record.case_id, set()).add(record.attributes.get("class") or "")
    groups = [case for case, size in sizes.items() if size > 1]
    return {
        "images": len(collection.images),
        "cases": len(sizes),
        "near_duplicate_groups": len(groups),
        "images_in_groups": sum(sizes[c] for c in groups),
        "groups_with_mixed_classes": sum(len(by_case[c]) > 1 for c in groups),
    }
