"""Reading ultrasound images (JPEG/PNG/BMP/TIFF and DICOM) into 8-bit greyscale arrays.

Every failure becomes a :class:`DataError` naming the file: empty files, undecodable or
truncated images, decompression bombs, DICOM without pixel data.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from thyronet.data.pixels import to_uint8
from thyronet.errors import DataError, ImageTooLargeError

# Ultrasound frames are well under a megapixel; refuse anything absurdly large before decoding.
MAX_PIXELS = 40_000_000
# What an ultrasound frame can be: anything smaller, more elongated or flatter is refused.
MIN_SIDE = 32
MAX_ASPECT = 8
MIN_RANGE = 4  # grey levels between the darkest and the brightest pixel
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif"}  # an animated GIF: its first frame
DICOM_SUFFIXES = {".dcm", ".dicom"}
T = TypeVar("T")


def is_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' at byte 128, whatever their extension."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def spacing_mm(path: Path) -> tuple[float, float] | None:
    """Pixel spacing (row, column) in mm of an input: a DICOM file's calibration; None for other
    images, which carry none."""
    if not is_dicom(path):
        return None
    from thyronet.data.dicom import pixel_spacing_mm

    return pixel_spacing_mm(path)


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


def _decode(path: Path) -> Image.Image:
    """Open and fully decode a raster image (truncation shows only when decoding)."""
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageTooLargeError(path, f"image of {width}x{height} pixels is over the {MAX_PIXELS:,}-pixel limit")
            image.load()
            return image
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(path, f"image over Pillow's decompression-bomb limit ({error})") from None
    except UnidentifiedImageError as error:
        raise DataError(path, f"not a readable image ({error.__class__.__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(path, f"corrupt or truncated image ({error})") from None


def read_pil(path: Path) -> np.ndarray:
    """Decode a raster image to HxW uint8 greyscale: 16-bit and float scaled per image; every
    other mode (palette, alpha, 1-bit, CMYK ...) through Pillow's ITU-R 601 luma conversion."""
    with _decode(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return to_uint8(np.asarray(image))
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")
        return np.asarray(image.convert("L"))


def check_frame(image: np.ndarray, path: Path) -> np.ndarray:
    """Refuse what cannot be an ultrasound frame: too small, a sliver, or one flat grey level."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise DataError(path, f"image of {width}x{height} pixels is too small (the shorter side must be at least {MIN_SIDE})")
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise DataError(path, f"image of {width}x{height} pixels is too elongated for an ultrasound frame "
                              f"(aspect ratio over {MAX_ASPECT}:1)")
    if int(image.max()) - int(image.min()) < MIN_RANGE:
        raise DataError(path, "image is blank (a single grey level): nothing to analyse")
    return image


def read_image(path: str | Path, frame: int | None = None, check: bool = True) -> np.ndarray:
    """Read any supported image as HxW uint8 greyscale, dispatched by content: DICOM by its
    magic bytes, other files through Pillow (a ``.dcm`` file without the DICOM preamble is tried
    as DICOM when Pillow cannot read it). ``check`` refuses frames no model should judge
    (:func:`check_frame`); masks are read without it."""
    path = Path(path)
    _check_file(path)
    from thyronet.data.dicom import read_dicom_frame

    if is_dicom(path):
        image = read_dicom_frame(path, frame)
    else:
        image = _raster_or_bare_dicom(path, read_pil, lambda: read_dicom_frame(path, frame))
    return check_frame(image, path) if check else image


def _raster_or_bare_dicom(path: Path, raster: Callable[[Path], T], dicom: Callable[[], T]) -> T:
    """Read a file without the DICOM preamble as a raster image; a ``.dcm`` one Pillow cannot read
    is tried as DICOM written without its 128-byte preamble, and if that fails too the error says
    the file is neither (random bytes named .dcm are not "a DICOM without pixels")."""
    try:
        return raster(path)
    except DataError:
        if path.suffix.lower() not in DICOM_SUFFIXES:
            raise
    from thyronet.data.dicom import DicomRefusal

    try:
        return dicom()
    except DicomRefusal:  # DICOM without its preamble, parsed and refused: its own reason says why
        raise
    except DataError as error:
        raise DataError(path, f"not a readable image, nor a DICOM file (as DICOM: {error.problem})") from None


def probe_image(path: str | Path) -> int | None:
    """Validate an image cheaply; returns the number of frames for DICOM, else ``None``."""
    path = Path(path)
    _check_file(path)
    from thyronet.data.dicom import probe_dicom

    if is_dicom(path):
        return probe_dicom(path)
    return _raster_or_bare_dicom(path, lambda p: _decode(p).close(), lambda: probe_dicom(path))


def read_upload(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode image bytes (raster or DICOM), checking content rather than the file name."""
    import tempfile

    safe_name = Path(name).name
    if safe_name in ("", ".", ".."):
        safe_name = "upload"
    with tempfile.TemporaryDirectory(prefix="thyronet-") as tmp:
        path = Path(tmp) / safe_name
        path.write_bytes(data)
        image = read_image(path)
    return image
