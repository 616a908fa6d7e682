"""Synthetic ultrasound-like data for tests: DDTI-layout folders, class folders, CSV, DICOM.

Images imitate DDTI's layout: a dark frame, a textured scan area, a grey-scale bar on the left
and burned-in text below the scan. Malignant nodules are drawn darker than benign ones, so a
model can learn the difference in a few epochs.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HEIGHT, WIDTH = 360, 560
SCAN = (60, 20, 470, 300)  # x0, y0, x1, y1 of the scan area
TIRADS_BY_LABEL = {0: ["2", "3"], 1: ["4a", "4b", "4c", "5"]}


def ultrasound_image(seed: int, malignant: bool, nodule: tuple[int, int, int, int] = (200, 100, 320, 200)) -> np.ndarray:
    """A 360x560 greyscale frame with a textured scan, a nodule, a grey bar and text."""
    rng = np.random.default_rng(seed)
    image = np.zeros((HEIGHT, WIDTH), np.uint8)
    x0, y0, x1, y1 = SCAN
    texture = rng.gamma(4.0, 25.0, (y1 - y0, x1 - x0)).clip(30, 230).astype(np.uint8)
    image[y0:y1, x0:x1] = cv2.GaussianBlur(texture, (3, 3), 0)
    nx0, ny0, nx1, ny1 = nodule
    centre, axes = ((nx0 + nx1) // 2, (ny0 + ny1) // 2), ((nx1 - nx0) // 2, (ny1 - ny0) // 2)
    cv2.ellipse(image, centre, axes, 0, 0, 360, 35 if malignant else 150, -1)
    image[150:250, 15:23] = np.linspace(255, 0, 100, dtype=np.uint8)[:, None]  # grey-scale bar
    cv2.putText(image, "DER", (70, 335), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1)
    cv2.putText(image, "P100", (500, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1)
    return image


def outline_json(nodule: tuple[int, int, int, int]) -> str:
    """The nodule ellipse as DDTI's JSON list of freehand regions, wrapped over lines like DDTI."""
    nx0, ny0, nx1, ny1 = nodule
    cx, cy, ax, ay = (nx0 + nx1) / 2, (ny0 + ny1) / 2, (nx1 - nx0) / 2, (ny1 - ny0) / 2
    points = [{"x": int(cx + ax * np.cos(t)), "y": int(cy + ay * np.sin(t))} for t in np.linspace(0, 2 * np.pi, 24)]
    text = json.dumps([{"points": points, "annotation": {}, "regionType": "freehand"}])
    return "\n            ".join(textwrap.wrap(text, 100, break_long_words=False, break_on_hyphens=False))


def case_xml(number: str, tirads: str, marks: Sequence[tuple[int, str]], **fields: str) -> str:
    values = {
        "age": "45", "sex": "F", "composition": "solid", "echogenicity": "hypoechogenicity",
        "margins": "well defined", "calcifications": "non", "reportbacaf": "", "reporteco": "",
    }
    values.update(fields)
    body = "".join(f"    <{k}>{v}</{k}>\n" for k, v in values.items())
    mark_xml = "".join(f"    <mark>\n        <image>{k}</image>\n        <svg>{svg}</svg>\n    </mark>\n" for k, svg in marks)
    return f"<case>\n    <number>{number}</number>\n{body}    <tirads>{tirads}</tirads>\n{mark_xml}</case>\n"


def make_ddti(root: Path, benign: int = 6, malignant: int = 10, unlabelled: int = 2, images_per_case: int = 1) -> Path:
    """A DDTI-layout folder; case numbers run 1..N; some cases get a second image."""
    root.mkdir(parents=True, exist_ok=True)
    labels = [0] * benign + [1] * malignant + [None] * unlabelled
    for index, label in enumerate(labels, start=1):
        count = images_per_case + (1 if index % 4 == 0 else 0)
        nodule = (150 + 5 * (index % 7), 90, 300 + 5 * (index % 5), 210)
        marks = []
        for k in range(1, count + 1):
            image = ultrasound_image(index * 10 + k, malignant=label == 1, nodule=nodule)
            Image.fromarray(image).convert("RGB").save(root / f"{index}_{k}.jpg", quality=92)
            marks.append((k, outline_json(nodule)))
        tirads = "" if label is None else TIRADS_BY_LABEL[label][index % len(TIRADS_BY_LABEL[label])]
        (root / f"{index}.xml").write_text(case_xml(str(index), tirads, marks))
    return root


def make_class_folders(root: Path, per_class: int = 4, benign_name: str = "Benign", malignant_name: str = "MALIGNANT") -> Path:
    for name, malignant in ((benign_name, False), (malignant_name, True)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(ultrasound_image(i + 100 * malignant, malignant)).save(folder / f"img{i}.png")
    return root


def make_dicom(path: Path, frames: int = 1, photometric: str = "MONOCHROME2", bits: int = 8, pixels: bool = True) -> Path:
    """A small valid DICOM file (Secondary Capture) with greyscale, RGB or YBR pixel data."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = 64, 96
    grey = cv2.resize(ultrasound_image(7, True), (96, 64), interpolation=cv2.INTER_AREA)
    if photometric in ("RGB", "YBR_FULL"):
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        array = np.stack([grey] * 3, -1)
        if photometric == "YBR_FULL":
            from pydicom.pixels import convert_color_space

            array = convert_color_space(array, "RGB", "YBR_FULL")
    else:
        ds.SamplesPerPixel = 1
        array = grey.astype(np.uint16) * 16 if bits == 16 else grey
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        array = np.stack([array] * frames)
    if pixels:
        ds.PixelData = array.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def busi_image(seed: int, malignant: bool) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 300x400 breast-ultrasound-like frame (layered tissue, a lesion where the seed puts it)
    and the lesion's box; different seeds differ at low spatial frequencies, as different scans do."""
    rng = np.random.default_rng(seed)
    height, width = 300, 400
    rows = np.linspace(0, 1, height)[:, None]
    layers = 120 + 60 * np.sin(2 * np.pi * (rng.uniform(1, 4) * rows + rng.uniform(0, 1)))
    tilt = rng.uniform(-80, 80) * np.linspace(-1, 1, width)[None, :]
    image = (layers + tilt + rng.normal(0, 20, (height, width))).clip(0, 255).astype(np.uint8)
    w, h = int(rng.integers(40, 120)), int(rng.integers(30, 80))
    x0, y0 = int(rng.integers(10, width - w - 10)), int(rng.integers(10, height - h - 10))
    cv2.ellipse(image, (x0 + w // 2, y0 + h // 2), (w // 2, h // 2), 0, 0, 360, 25 if malignant else 60, -1)
    return image, (x0, y0, x0 + w, y0 + h)


def make_busi(root: Path, benign: int = 5, malignant: int = 4, normal: int = 2,
              duplicates: Sequence[tuple[str, str]] = ()) -> Path:
    """A BUSI-layout folder; each ``(original, copy)`` in ``duplicates`` (names like "benign_1")
    adds a re-encoded, slightly brightened copy of an image, of the class its name says."""
    rows = ["path,class,mask"]
    made: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind, count in (("benign", benign), ("malignant", malignant), ("normal", normal)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index in range(1, count + 1):
            seed = {"benign": 0, "malignant": 1000, "normal": 2000}[kind] + index
            image, (x0, y0, x1, y1) = busi_image(seed, kind == "malignant")
            mask = np.zeros_like(image)
            if kind != "normal":
                cv2.ellipse(mask, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0, 360, 255, -1)
            made[f"{kind}_{index}"] = (image, mask)
    for original, copy in duplicates:
        image, mask = made[original]
        made[copy] = (np.clip(image.astype(int) + 6, 0, 255).astype(np.uint8), mask)
    for name, (image, mask) in made.items():
        kind = name.rsplit("_", 1)[0]
        (root / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / kind / f"{name}.jpg", quality=90)
        Image.fromarray(mask).save(root / kind / f"{name}_mask.png")
        rows.append(f"{kind}/{name}.jpg,{kind},{kind}/{name}_mask.png")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def make_us_dicom(path: Path, spacing_mm: float = 0.1, rows: int = 360, cols: int = 480,
                  nodule: tuple[int, int, int, int] = (240, 180, 80, 40), study_uid: str | None = None,
                  series_uid: str | None = None) -> Path:
    """A calibrated Ultrasound Image Storage file with a darker elliptical nodule at (cx, cy,
    semi-axis x, semi-axis y), in a study and series of its own unless the UIDs name them."""
    from thyronet.data.dicom import write_ultrasound

    image = cv2.resize(ultrasound_image(3, True), (cols, rows))
    cx, cy, ax, ay = nodule
    cv2.ellipse(image, (cx, cy), (ax, ay), 0, 0, 360, 25, -1)
    return write_ultrasound(path, image, spacing_mm, patient_id="THYRONET-TEST", study_uid=study_uid,
                            series_uid=series_uid)
