"""A corpus of awkward input files: broken ones that must be refused by name, and odd but valid ones
that must be predicted. Shared by the CLI and API tests of bad input."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from synthetic import make_dicom, ultrasound_image


@dataclass(frozen=True)
class BadFile:
    name: str
    data: bytes
    problem: str | None  # a fragment of the expected error; None: the file must be predicted


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(ultrasound_image(seed, True)).convert("P") for seed in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _png_bomb() -> bytes:
    # 9000 x 9000 declared pixels in a file of a few hundred kilobytes
    return _encode(Image.new("L", (9000, 9000)), "PNG")


def _float_tiff() -> bytes:
    return _encode(Image.fromarray(_noise((360, 560), 4).astype(np.float32) / 255.0, mode="F"), "TIFF")


def _sixteen_bit_png() -> bytes:
    return _encode(Image.fromarray((_noise((360, 560), 3).astype(np.uint16) * 257)), "PNG")


def corpus(tmp: Path) -> list[BadFile]:
    """Twenty kinds of awkward file (the DICOM ones are written through `tmp`)."""
    good = Image.fromarray(ultrasound_image(0, True))
    jpeg = _encode(good, "JPEG")
    no_pixels = make_dicom(tmp / "no_pixels.dcm", pixels=False).read_bytes()
    return [
        BadFile("zero_bytes.png", b"", "empty file"),
        BadFile("truncated.jpg", jpeg[:3000], "corrupt or truncated"),
        BadFile("header_only.jpg", jpeg[:20], "not a readable image"),
        BadFile("text_named.jpg", b"these are notes, not an image\n" * 4, "not a readable image"),
        BadFile("html_named.png", b"<!doctype html><html><body>404 Not Found</body></html>", "not a readable image"),
        BadFile("bomb.png", _png_bomb(), "pixel limit"),
        BadFile("random_bytes.dcm", bytes(_noise((4096,), 9)), "nor a DICOM file"),
        BadFile("no_pixels.dcm", no_pixels, "no pixel data"),
        BadFile("tiny_2x2.png", _encode(Image.new("L", (2, 2), 90), "PNG"), "too small"),
        BadFile("sliver_1x5000.png", _encode(Image.fromarray(_noise((5000, 1), 1)), "PNG"), "too small"),
        BadFile("constant.png", _encode(Image.new("L", (560, 360), 128), "PNG"), "blank"),
        # odd but valid: each must be read and predicted (noise with an out-of-distribution warning)
        BadFile("grey_alpha.png", _encode(good.convert("LA"), "PNG"), None),
        BadFile("png_named.dcm", _encode(good, "PNG"), None),
        BadFile("animated.gif", _animated_gif(), None),
        BadFile("noise_rgba.png", _encode(Image.fromarray(_noise((360, 560, 4), 2), mode="RGBA"), "PNG"), None),
        BadFile("noise_palette.png", _encode(Image.fromarray(_noise((360, 560), 5)).convert("P"), "PNG"), None),
        BadFile("noise_16bit.png", _sixteen_bit_png(), None),
        BadFile("noise_float.tif", _float_tiff(), None),
        BadFile("noise_1bit.png", _encode(Image.fromarray(_noise((360, 560), 6)).convert("1"), "PNG"), None),
        BadFile("noise_cmyk.jpg", _encode(Image.fromarray(_noise((360, 560, 4), 7), mode="CMYK"), "JPEG"), None),
    ]


def write_corpus(folder: Path) -> list[BadFile]:
    folder.mkdir(parents=True, exist_ok=True)
    files = corpus(folder.parent)
    for item in files:
        (folder / item.name).write_bytes(item.data)
    return files


__all__ = ["BadFile", "corpus", "write_corpus"]
