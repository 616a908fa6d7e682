"""Opening any supported data source: a DDTI folder, class folders, a CSV manifest, DICOM or image files.

* DDTI: a folder of ``<case>.xml`` + ``<case>_<k>.jpg`` (see :mod:`thyronet.data.ddti`).
* Class folders: ``benign/`` and ``malignant/`` subfolders (any letter case), images or DICOM
  inside (searched recursively). Each file is its own case unless a CSV gives groups.
* BUSI: a folder with ``labels.csv`` (``path,class,mask``; see :mod:`thyronet.data.busi`).
* CSV manifest: columns ``path,label[,group][,mask]``; paths relative to the CSV's folder; a
  ``mask`` is a 0/255 nodule mask image of the image's size (for segmentation metrics).
* A reading store (``reads.sqlite`` + ``images/``; see :mod:`thyronet.data.readstore`): its signed
  reads, with the confirmed outlines and the outcomes' labels.
* Anything else: image/DICOM files or folders of them, unlabelled (for prediction).

A multi-frame DICOM file yields one record per frame, all in the file's case.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from thyronet.data.busi import is_busi_folder, read_busi
from thyronet.data.ddti import is_ddti_folder, read_ddti
from thyronet.data.imageio import looks_like_image
from thyronet.data.reader import SourceReader
from thyronet.data.readstore import is_store_folder, read_store
from thyronet.data.records import BENIGN, MALIGNANT, Collection
from thyronet.data.vocabulary import parse_label
from thyronet.errors import DataError, ThyronetError

CLASS_FOLDERS = {"benign": BENIGN, "malignant": MALIGNANT}


def _class_folders(path: Path) -> dict[int, Path]:
    if not path.is_dir():
        return {}
    found = {}
    for child in path.iterdir():
        if child.is_dir() and child.name.lower() in CLASS_FOLDERS:
            found[CLASS_FOLDERS[child.name.lower()]] = child
    return found


def _files_in(folder: Path, report: Callable[[DataError], None]) -> Iterable[Path]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue
        if looks_like_image(path):
            yield path
        else:
            report(DataError(path, "not an image or DICOM file"))


def read_class_folders(root: Path, strict: bool = False) -> Collection:
    reader = SourceReader(root, "class-folders", strict)
    for label, folder in sorted(_class_folders(root).items()):
        for path in _files_in(folder, reader.skip):
            reader.add_file(path, label, case_id=str(path.relative_to(root).with_suffix("")))
    return reader.collection


def read_manifest(csv_path: Path, strict: bool = False) -> Collection:
    """A CSV with header ``path,label[,group]``."""
    reader = SourceReader(csv_path.parent, "manifest", strict)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(csv_path, f"unreadable CSV ({error})") from None
    if not rows or "path" not in rows[0] or "label" not in rows[0]:
        raise DataError(csv_path, "CSV manifest needs a header with columns path,label[,group]")
    for line, row in enumerate(rows, start=2):
        raw_path = (row.get("path") or "").strip()
        if not raw_path:
            reader.skip(DataError(csv_path, f"line {line}: empty path"))
            continue
        path = Path(raw_path) if Path(raw_path).is_absolute() else csv_path.parent / raw_path
        try:
            label = parse_label(row.get("label") or "")
        except ValueError as error:
            reader.skip(DataError(csv_path, f"line {line}: {error}"))
            continue
        group = (row.get("group") or "").strip() or raw_path
        raw_mask = (row.get("mask") or "").strip()
        mask = None if not raw_mask else Path(raw_mask) if Path(raw_mask).is_absolute() else csv_path.parent / raw_mask
        reader.add_file(path, label, case_id=group, mask=mask)
    return reader.collection


def read_files(paths: Sequence[Path], strict: bool = False) -> Collection:
    """Loose image/DICOM files and folders of them, unlabelled; each file is its own case."""
    root = paths[0] if len(paths) == 1 and paths[0].is_dir() else Path(".")
    reader = SourceReader(root, "files", strict)
    for path in paths:
        if path.is_dir():
            for file in _files_in(path, reader.skip):
                reader.add_file(file, None, case_id=str(file))
        else:
            reader.add_file(path, None, case_id=str(path))
    return reader.collection


def open_source(path: str | Path, strict: bool = False) -> Collection:
    """Open a data source of any supported kind, detected from what the path holds."""
    path = Path(path)
    if not path.exists():
        raise ThyronetError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_manifest(path, strict)
    if is_ddti_folder(path):
        return read_ddti(path, strict)
    if is_store_folder(path):  # a reading store: its signed reads
        return read_store(path)
    if is_busi_folder(path):  # before class folders: BUSI's benign/ and malignant/ hold masks too
        return read_busi(path, strict)
    if _class_folders(path):
        return read_class_folders(path, strict)
    return read_files([path], strict)


def open_inputs(paths: Sequence[str | Path], strict: bool = False) -> Collection:
    """Inputs for prediction: one source (DDTI, class folders, CSV) or any mix of files/folders."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix.lower() == ".csv"):
        return open_source(paths[0], strict)
    return read_files(paths, strict)  # a missing or unreadable file is one counted issue
