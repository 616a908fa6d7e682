"""Deterministic preprocessing of an ultrasound frame, each step a switch in the config.

Order: crop to the scan area -> (mask burned-in marks) -> (crop to the nodule's outline box)
-> (despeckle) -> (CLAHE) -> resize keeping the aspect ratio, padded to a square.
The nodule outline, rasterised to a mask, goes through the same geometric steps, so it stays
aligned with the image (for previews and for measuring where Grad-CAM looked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from .records import Polygon

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass(frozen=True)
class PreprocessConfig:
    """Switches for each step; the defaults are the CPU configuration's."""

    scan_crop: bool = True
    text_mask: bool = False  # also removes bright specks, microcalcifications included: off by default
    nodule_crop: bool = False
    nodule_margin: float = 0.25
    despeckle: Literal["median", "bilateral", "nlmeans"] | None = None
    clahe: bool = False
    size: int = 128


def outline_mask(shape: tuple[int, int], outlines: Sequence[Polygon]) -> np.ndarray | None:
    """Rasterise polygons (image pixel coordinates) to a uint8 mask of 0/255, or None if none."""
    if not outlines:
        return None
    mask = np.zeros(shape, np.uint8)
    polygons = [np.round(np.asarray(p, np.float32)).astype(np.int32) for p in outlines]
    cv2.fillPoly(mask, polygons, 255)
    return mask


def scan_area_box(image: np.ndarray, threshold: int = 12, min_area: float = 0.02, kernel: int = 25) -> Box:
    """The box around the ultrasound scan, leaving out the dark frame, grey bar and text.

    Burned-in text, tick marks and the grey-scale bar are thin: a morphological opening with a
    ``kernel``-pixel square removes them, while the scan, a large textured area, survives. The
    box spans every large remaining region, so both halves of a dual-view image are kept.
    """
    height, width = image.shape
    foreground = (cv2.blur(image, (5, 5)) > threshold).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((kernel, kernel), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(foreground)
    large = [s for s in stats[1:count] if s[cv2.CC_STAT_AREA] >= min_area * height * width]
    if not large:
        return (0, 0, width, height)
    x0 = min(s[cv2.CC_STAT_LEFT] for s in large)
    y0 = min(s[cv2.CC_STAT_TOP] for s in large)
    x1 = max(s[cv2.CC_STAT_LEFT] + s[cv2.CC_STAT_WIDTH] for s in large)
    y1 = max(s[cv2.CC_STAT_TOP] + s[cv2.CC_STAT_HEIGHT] for s in large)
    return (int(x0), int(y0), int(x1), int(y1))


def mask_marks(image: np.ndarray) -> np.ndarray:
    """Inpaint small saturated marks (calipers, text, symbols) inside the scan area."""
    tophat = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, np.ones((9, 9), np.uint8))
    marks = ((image >= 235) & (tophat >= 60)).astype(np.uint8) * 255
    marks = cv2.dilate(marks, np.ones((3, 3), np.uint8))
    return cv2.inpaint(image, marks, 3, cv2.INPAINT_TELEA)


def mask_box(mask: np.ndarray, margin: float) -> Box | None:
    """The box around a mask's foreground, grown by ``margin`` times its size on each side."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    grow_x, grow_y = int((x1 - x0) * margin), int((y1 - y0) * margin)
    height, width = mask.shape
    return (max(0, x0 - grow_x), max(0, y0 - grow_y), min(width, x1 + grow_x), min(height, y1 + grow_y))


def despeckle(image: np.ndarray, method: str) -> np.ndarray:
    if method == "median":
        return cv2.medianBlur(image, 5)
    if method == "bilateral":
        return cv2.bilateralFilter(image, 7, 40, 7)
    if method == "nlmeans":
        return cv2.fastNlMeansDenoising(image, None, h=10, templateWindowSize=7, searchWindowSize=21)
    raise ValueError(f"unknown despeckle method {method!r} (median, bilateral, nlmeans)")


def letterbox(image: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize so the longer side is ``size`` and pad the shorter side centrally with zeros."""
    height, width = image.shape
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size), image.dtype)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def preprocess(
    image: np.ndarray, config: PreprocessConfig, outlines: Sequence[Polygon] = ()
) -> tuple[np.ndarray, np.ndarray | None]:
    """HxW uint8 frame (+ outlines) -> (size x size uint8 image, aligned outline mask or None)."""
    mask = outline_mask(image.shape, outlines)
    if config.scan_crop:
        box = scan_area_box(image)
        image = _crop(image, box)
        mask = None if mask is None else _crop(mask, box)
    if config.text_mask:
        image = mask_marks(image)
    if config.nodule_crop and mask is not None:
        box = mask_box(mask, config.nodule_margin)
        if box is not None:
            image, mask = _crop(image, box), _crop(mask, box)
    if config.despeckle:
        image = despeckle(image, config.despeckle)
    if config.clahe:
        image = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(image)
    image = letterbox(np.ascontiguousarray(image), config.size)
    if mask is not None:
        mask = letterbox(np.ascontiguousarray(mask), config.size, cv2.INTER_NEAREST)
    return image, mask
