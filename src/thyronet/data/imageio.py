"""Reading ultrasound images (JPEG/PNG/BMP/TIFF and DICOM) into 8-bit greyscale arrays.

Every failure becomes a :class:`DataError` naming the file: empty files, undecodable or
truncated images, decompression bombs, DICOM without pixel data.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

# Ultrasound frames are well under a megapixel; refuse anything absurdly large before decoding.
MAX_PIXELS = 40_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


def is_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' at byte 128, whatever their extension."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def looks_like_image(path: Path) -> bool:
    """Whether a file in a folder is meant as an input image (by extension or DICOM magic)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or (suffix == "" and is_dicom(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel data of any bit depth to 0..255 (min-max per image)."""
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    return np.round((array - low) * (255.0 / (high - low))).astype(np.uint8)


def _to_grey(array: np.ndarray) -> np.ndarray:
    """HxW or HxWxC (RGB/RGBA) -> HxW uint8; alpha is dropped (ultrasound has no transparency)."""
    if array.ndim == 3:
        channels = array[..., :3].astype(np.float32)
        if channels.shape[-1] == 1:
            array = channels[..., 0]
        else:  # ITU-R 601 luma, as PIL's "L" conversion
            array = channels @ np.array([0.299, 0.587, 0.114], np.float32)
            array = np.clip(np.round(array), 0, 255).astype(np.uint8) if channels.max() <= 255 else array
    return _to_uint8(array)


def _decode(path: Path) -> Image.Image:
    """Open and fully decode a raster image (truncation shows only when decoding)."""
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DataError(path, f"image of {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
            image.load()
            return image
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(path, f"not a readable image ({error.__class__.__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(path, f"corrupt or truncated image ({error})") from None


def read_pil(path: Path) -> np.ndarray:
    """Decode a raster image to HxW uint8 greyscale (16-bit scaled, palette and alpha resolved)."""
    with _decode(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _to_uint8(np.asarray(image))
        if image.mode == "P":
            image = image.convert("RGBA")
        return _to_grey(np.asarray(image))


def read_image(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read any supported image (DICOM by content, others through Pillow) as HxW uint8 greyscale."""
    path = Path(path)
    _check_file(path)
    if is_dicom(path) or path.suffix.lower() in DICOM_SUFFIXES:
        from .dicom import read_dicom_frame

        return read_dicom_frame(path, frame)
    return read_pil(path)


def probe_image(path: str | Path) -> int | None:
    """Validate an image cheaply; returns the number of frames for DICOM, else ``None``."""
    path = Path(path)
    _check_file(path)
    if is_dicom(path) or path.suffix.lower() in DICOM_SUFFIXES:
        from .dicom import probe_dicom

        return probe_dicom(path)
    _decode(path).close()
    return None


def read_upload(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode image bytes (raster or DICOM), checking content rather than the file name."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="thyronet-") as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        image = read_image(path)
    return image
