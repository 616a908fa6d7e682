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
    """(row, column) spacing in mm: PixelSpacing, else the first ultrasound region's physical
    deltas (in cm, DICOM unit code 3); None when the file does not say."""
    dataset = _read(path, defer_pixels=True)
    spacing = getattr(dataset, "PixelSpacing", None)
    if spacing is not None and len(spacing) == 2 and all(float(v) > 0 for v in spacing):
        return float(spacing[0]), float(spacing[1])
    for region in getattr(dataset, "SequenceOfUltrasoundRegions", []) or []:
        units_x, units_y = getattr(region, "PhysicalUnitsXDirection", None), getattr(region, "PhysicalUnitsYDirection", None)
        dx, dy = getattr(region, "PhysicalDeltaX", None), getattr(region, "PhysicalDeltaY", None)
        if units_x == 3 and units_y == 3 and dx and dy and float(dx) > 0 and float(dy) > 0:
            return abs(float(dy)) * 10.0, abs(float(dx)) * 10.0
    return None
