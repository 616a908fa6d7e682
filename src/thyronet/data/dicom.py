"""DICOM input through pydicom: greyscale (MONOCHROME1/2), RGB and YBR, single- and multi-frame,
ultrasound only.

Every DICOM object passes :func:`ultrasound_refusal` before anything reads its pixels: thyronet
answers US Image Storage and US Multi-frame Image Storage (and their retired classes), and any
other image object whose Modality is US (a Secondary Capture of an ultrasound frame); a CT, an MR,
a structured report or a presentation state is refused with one line saying what it is. A header
whose frame count or size cannot be read is refused the same way, before decoding.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from thyronet.data.pixels import to_grey, to_uint8
from thyronet.errors import DataError

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
ULTRASOUND_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "US Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "US Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "US Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.3": "US Multi-frame Image Storage (Retired)",
}


class DicomRefusal(DataError):
    """A DICOM object that was parsed (it has a SOP Class UID) and is not answered: not
    ultrasound, without pixels, or with a malformed header. A file without the 128-byte preamble
    that gives this is DICOM all the same, not "neither an image nor DICOM"."""


def _sop_class_uid(dataset) -> str:
    """The SOP Class UID, from the data set or else its file meta information ('' when neither has one)."""
    meta = getattr(dataset, "file_meta", None)
    return str(dataset.get("SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", "") or "")


def sop_class_name(dataset) -> str:
    """'CT Image Storage' for a data set's SOP Class UID (the UID itself when pydicom does not know it)."""
    from pydicom.uid import UID

    uid = _sop_class_uid(dataset)
    if not uid:
        return "an object without SOP Class UID"
    name = UID(uid).name
    return name if name and name != uid else f"SOP Class {uid}"


def ultrasound_refusal(dataset) -> str | None:
    """Why thyronet does not answer this data set (one line), or None for an ultrasound image."""
    uid = _sop_class_uid(dataset)
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    what = sop_class_name(dataset) + (f", modality {modality}" if modality and uid not in ULTRASOUND_SOP_CLASSES else "")
    if uid not in ULTRASOUND_SOP_CLASSES and modality != "US":
        return f"{what}: thyronet reads ultrasound only"
    if not any(tag in dataset for tag in PIXEL_TAGS):
        return f"{what}: no pixel data, nothing to answer"
    try:
        frames, rows, columns = frame_count(dataset), int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    except (TypeError, ValueError) as error:
        return f"{what}: malformed header ({error})"
    if rows <= 0 or columns <= 0:
        return f"{what}: malformed header (Rows/Columns missing or zero)"
    if frames <= 0:
        return f"{what}: malformed header (NumberOfFrames {frames})"
    return None


def frame_count(dataset) -> int:
    """NumberOfFrames (1 when absent); ``ValueError`` for a value that is not a whole number."""
    if "NumberOfFrames" not in dataset:
        return 1
    raw = dataset.get_item("NumberOfFrames").value  # as stored: pydicom's conversion fails on junk
    text = (raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)).strip()
    try:
        return int(text or 1)
    except ValueError:
        raise ValueError(f"NumberOfFrames {text[:20]!r} is not a number") from None


def _read(path: Path, defer_pixels: bool):
    """The parsed dataset, checked by :func:`ultrasound_refusal`; a refusal is an error naming the file."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True, defer_size="1 KB" if defer_pixels else None)
        refusal = ultrasound_refusal(dataset)
    except Exception as error:  # pydicom raises many types for a broken header, some only on access
        raise DataError(path, f"unreadable DICOM ({error.__class__.__name__}: {error})") from None
    if refusal:
        raise (DicomRefusal if _sop_class_uid(dataset) else DataError)(path, refusal)
    return dataset


def probe_dicom(path: Path) -> int:
    """Check the DICOM header; returns its number of frames."""
    return frame_count(_read(path, defer_pixels=True))


def read_dicom_frame(path: Path, frame: int | None = None) -> np.ndarray:
    """One frame (the first by default) as HxW uint8 greyscale."""
    dataset = _read(path, defer_pixels=False)
    _declare_native_syntax(dataset)
    try:
        pixels = dataset.pixel_array  # YBR data comes back converted to RGB
    except Exception as error:  # missing decoder, truncated data, bad header values
        raise DataError(path, f"cannot decode DICOM pixel data ({error})") from None
    frames = frame_count(dataset)
    if frames > 1:
        index = frame or 0
        if not 0 <= index < frames:
            raise DataError(path, f"frame {index} requested but the file has {frames} frames")
        pixels = pixels[index]
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            colours = apply_color_lut(pixels, _lookup_tables_little_endian(dataset))
            lut_bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])  # 8 or 16 bits per entry
            return to_grey((colours >> max(lut_bits - 8, 0)).astype(np.uint8))  # a colour, not a range to stretch
        except Exception as error:  # a missing or inconsistent lookup table
            raise DataError(path, f"cannot apply the PALETTE COLOR lookup table ({error})") from None
    if int(getattr(dataset, "SamplesPerPixel", 1) or 1) > 1:
        return to_grey(pixels)
    pixels = to_uint8(pixels)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        pixels = 255 - pixels  # MONOCHROME1: the lowest value is white
    return pixels


def _declare_native_syntax(dataset) -> None:
    """A data set written without file meta information (no Transfer Syntax UID) whose pixel data
    is not compressed: declare the encoding pydicom read it in, which is all its decoder needs."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(dataset, "file_meta", None)
    if getattr(meta, "TransferSyntaxUID", None) or "PixelData" not in dataset or dataset["PixelData"].is_undefined_length:
        return
    implicit, little = dataset.original_encoding
    syntax = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
              (False, False): ExplicitVRBigEndian}.get((implicit, little))
    if syntax is not None:
        dataset.file_meta = meta if meta is not None else FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = syntax


def _lookup_tables_little_endian(dataset):
    """The data set with its 16-bit palette lookup tables in little-endian order: pydicom 3.0.2
    reads them in the machine's order whatever the transfer syntax, which turns a Big Endian
    file's palette into noise (pydicom's OBXXXX1A_expb.dcm came out a blank frame)."""
    if "RedPaletteColorLookupTableData" not in dataset or _little_endian(dataset):
        return dataset
    for colour in ("Red", "Green", "Blue", "Alpha"):
        name = f"{colour}PaletteColorLookupTableData"
        if name in dataset and len(dataset[name].value) == 2 * (int(dataset.RedPaletteColorLookupTableDescriptor[0]) or 65536):
            dataset[name].value = np.frombuffer(dataset[name].value, ">u2").astype("<u2").tobytes()
    return dataset


def _little_endian(dataset) -> bool:
    """Whether the data set was encoded little endian (DICOM's default when nothing says)."""
    meta = getattr(dataset, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None)
    if syntax is not None:
        from pydicom.uid import UID

        return UID(syntax).is_little_endian is not False
    return dataset.original_encoding[1] is not False


def pixel_spacing_mm(path: Path) -> tuple[float, float] | None:
    """(row, column) spacing in mm of a DICOM file (:func:`dataset_spacing_mm`)."""
    return dataset_spacing_mm(_read(path, defer_pixels=True))


def dataset_spacing_mm(dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm of a parsed DICOM data set: PixelSpacing, else the first
    ultrasound region's physical deltas (in cm, DICOM unit code 3); None when it does not say."""
    spacing = getattr(dataset, "PixelSpacing", None)
    if spacing is not None and len(spacing) == 2 and all(float(v) > 0 for v in spacing):
        return float(spacing[0]), float(spacing[1])
    for region in getattr(dataset, "SequenceOfUltrasoundRegions", []) or []:
        units_x, units_y = getattr(region, "PhysicalUnitsXDirection", None), getattr(region, "PhysicalUnitsYDirection", None)
        dx, dy = getattr(region, "PhysicalDeltaX", None), getattr(region, "PhysicalDeltaY", None)
        if units_x == 3 and units_y == 3 and dx and dy and float(dx) > 0 and float(dy) > 0:
            return abs(float(dy)) * 10.0, abs(float(dx)) * 10.0
    return None


def write_ultrasound(path: Path, image: np.ndarray, spacing_mm: float | None = None, patient_id: str = "ANONYMOUS",
                     study_uid: str | None = None, series_uid: str | None = None) -> Path:
    """Write an 8-bit grey frame as an Ultrasound Image Storage object, calibrated by one ultrasound
    region (PhysicalDeltaX/Y in cm) when ``spacing_mm`` is given: how a JPEG export or a synthetic
    frame becomes what a scanner would send (the DICOM node's tests and benchmark use it)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    rows, cols = image.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Anonymous^", "", ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
    now = datetime.datetime.now()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
        now.strftime("%Y%m%d"), now.strftime("%H%M%S"), "1", "", "")
    ds.SeriesNumber, ds.InstanceNumber, ds.Modality, ds.Manufacturer = 1, 1, "US", "thyronet"
    ds.PatientOrientation, ds.ImageType, ds.BodyPartExamined = ["L", "F"], ["DERIVED", "SECONDARY"], "THYROID"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if spacing_mm is not None:
        region = Dataset()
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = cols - 1, rows - 1
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
        region.PhysicalDeltaX = region.PhysicalDeltaY = spacing_mm / 10
        ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
