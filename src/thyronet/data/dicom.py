"""DICOM input through pydicom: greyscale (MONOCHROME1/2), RGB and YBR, single- and multi-frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from thyronet.data.pixels import to_grey, to_uint8
from thyronet.errors import DataError

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _read(path: Path, defer_pixels: bool):
    """The parsed dataset; a file without pixel data is an error naming it."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True, defer_size="1 KB" if defer_pixels else None)
    except Exception as error:  # pydicom raises many types for a broken header
        raise DataError(path, f"unreadable DICOM ({error})") from None
    if not any(tag in dataset for tag in PIXEL_TAGS):
        raise DataError(path, "DICOM file has no pixel data")
    return dataset


def probe_dicom(path: Path) -> int:
    """Check the DICOM header; returns its number of frames."""
    return int(getattr(_read(path, defer_pixels=True), "NumberOfFrames", 1) or 1)


def read_dicom_frame(path: Path, frame: int | None = None) -> np.ndarray:
    """One frame (the first by default) as HxW uint8 greyscale."""
    dataset = _read(path, defer_pixels=False)
    try:
        pixels = dataset.pixel_array  # YBR data comes back converted to RGB
    except Exception as error:  # missing decoder, truncated data, bad header values
        raise DataError(path, f"cannot decode DICOM pixel data ({error})") from None
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        index = frame or 0
        if not 0 <= index < frames:
            raise DataError(path, f"frame {index} requested but the file has {frames} frames")
        pixels = pixels[index]
    if int(getattr(dataset, "SamplesPerPixel", 1) or 1) > 1:
        return to_grey(pixels)
    pixels = to_uint8(pixels)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        pixels = 255 - pixels  # MONOCHROME1: the lowest value is white
    return pixels


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
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Anonymous", "", ""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "1", "", ""
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
