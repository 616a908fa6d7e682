"""Deterministic preprocessing of an ultrasound frame, each step a switch in the config.

Order: crop to a region (the scan area, or a region of interest around the nodule given as a
box in frame pixels) -> (mask burned-in marks) -> (despeckle) -> (CLAHE) -> resize to a square,
keeping the aspect ratio and padding (letterbox) or not (stretch). The nodule outline, rasterised to a mask, goes through the same
geometric steps, so it stays aligned with the image (for previews and for measuring where Grad-CAM
looked); :class:`Geometry` records those steps so that a map on the model input (a predicted mask,
a heat map) can be carried back onto the frame at its own resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from thyronet.data.records import Polygon

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass(frozen=True)
class PreprocessConfig:
    """Switches for each step; the defaults are the CPU configuration's."""

    scan_crop: bool = True
    text_mask: bool = False  # also removes bright specks, microcalcifications included: off by default
    despeckle: Literal["median", "bilateral", "nlmeans"] | None = None
    clahe: bool = False
    size: int = 128
    # "letterbox" keeps the crop's aspect ratio and pads; "stretch" fills the square. Letterboxing
    # shows the scan area's shape (the sonographer's depth and zoom) as black bands, which on DDTI
    # predicts the label by itself (docs/results.md, "What the whole frame gives away")
    fit: Literal["letterbox", "stretch"] = "letterbox"


def outline_mask(shape: tuple[int, int], outlines: Sequence[Polygon]) -> np.ndarray | None:
    """Rasterise polygons (image pixel coordinates) to a uint8 mask of 0/255, or None if none."""
    if not outlines:
        return None
    mask = np.zeros(shape, np.uint8)
    # one polygon at a time: fillPoly fills several by the even-odd rule, so two overlapping
    # outlines of the same nodule (DDTI has a few, e.g. 350_2) would cancel out
    for polygon in outlines:
        cv2.fillPoly(mask, [np.round(np.asarray(polygon, np.float32)).astype(np.int32)], 255)
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


def mask_box(mask: np.ndarray, margin: float = 0.0) -> Box | None:
    """The box around a mask's foreground, grown by ``margin`` times its size on each side."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return grow_box(box, mask.shape, margin) if margin else box


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground region of a 0/255 mask (all zeros if there is none).

    DDTI's dual-view frames outline the same nodule in both halves; a region of interest and a
    reported size refer to one view of it.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == largest, 255, 0).astype(np.uint8)


def grow_box(box: Box, shape: tuple[int, int], margin: float, min_side: int = 16) -> Box:
    """``box`` grown by ``margin`` times its width/height on each side (at least ``min_side``
    pixels wide and high), clipped to an image of ``shape`` (height, width)."""
    x0, y0, x1, y1 = box
    height, width = shape
    half_w = max((x1 - x0) * (0.5 + margin), min_side / 2)
    half_h = max((y1 - y0) * (0.5 + margin), min_side / 2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (
        max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h))),
        min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h))),
    )


def jitter_box(box: Box, shape: tuple[int, int], amount: float, rng: np.random.Generator) -> Box:
    """A random perturbation of ``box``: its centre moved by up to ``amount`` of its size, its
    width and height scaled by up to 1 +/- ``amount``; always at least 2 pixels and inside the image."""
    x0, y0, x1, y1 = box
    height, width = shape
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2 + rng.uniform(-amount, amount) * w
    cy = (y0 + y1) / 2 + rng.uniform(-amount, amount) * h
    w *= 1 + rng.uniform(-amount, amount)
    h *= 1 + rng.uniform(-amount, amount)
    nx0 = int(np.clip(np.floor(cx - w / 2), 0, width - 2))
    ny0 = int(np.clip(np.floor(cy - h / 2), 0, height - 2))
    nx1 = int(np.clip(np.ceil(cx + w / 2), nx0 + 2, width))
    ny1 = int(np.clip(np.ceil(cy + h / 2), ny0 + 2, height))
    return (nx0, ny0, nx1, ny1)


def despeckle(image: np.ndarray, method: str) -> np.ndarray:
    if method == "median":
        return cv2.medianBlur(image, 5)
    if method == "bilateral":
        return cv2.bilateralFilter(image, 7, 40, 7)
    if method == "nlmeans":
        return cv2.fastNlMeansDenoising(image, None, h=10, templateWindowSize=7, searchWindowSize=21)
    raise ValueError(f"unknown despeckle method {method!r} (median, bilateral, nlmeans)")


def _layout(height: int, width: int, size: int, fit: str = "letterbox") -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left) of an image fitted into size x size."""
    if fit == "stretch":
        return size, size, 0, 0
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_h, new_w, (size - new_h) // 2, (size - new_w) // 2


def fit_square(image: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA, fit: str = "letterbox") -> np.ndarray:
    """``letterbox``: resize so the longer side is ``size`` and pad the shorter side centrally
    with zeros; ``stretch``: resize to size x size."""
    new_h, new_w, top, left = _layout(*image.shape[:2], size, fit)
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size), image.dtype)
    out[top : top + new_h, left : left + new_w] = resized
    return out


@dataclass(frozen=True)
class Geometry:
    """How a model input was cut from its frame: the crop box (frame pixels), then the fit to a square."""

    frame_shape: tuple[int, int]  # height, width of the original frame
    crop: Box
    size: int
    fit: str = "letterbox"

    def to_frame(self, input_map: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """A size x size map on the model input (a mask, a heat map) -> the frame's pixel grid;
        zero outside the crop."""
        x0, y0, x1, y1 = self.crop
        new_h, new_w, top, left = _layout(y1 - y0, x1 - x0, self.size, self.fit)
        inner = np.ascontiguousarray(input_map[top : top + new_h, left : left + new_w])
        out = np.zeros(self.frame_shape, input_map.dtype)
        out[y0:y1, x0:x1] = cv2.resize(inner, (x1 - x0, y1 - y0), interpolation=interpolation)
        return out


def _crop(image: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def preprocess(
    image: np.ndarray, config: PreprocessConfig, outlines: Sequence[Polygon] = (), region: Box | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """HxW uint8 frame (+ outlines) -> (size x size uint8 image, aligned outline mask or None).

    ``region``: a box in frame pixels to cut out (a region of interest around the nodule) instead
    of the scan area.
    """
    prepared, mask, _ = preprocess_with_geometry(image, config, outlines, region)
    return prepared, mask


def preprocess_with_geometry(
    image: np.ndarray, config: PreprocessConfig, outlines: Sequence[Polygon] = (), region: Box | None = None
) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    """:func:`preprocess`, also returning the :class:`Geometry` that maps the input back to the frame."""
    mask = outline_mask(image.shape, outlines)
    if region is not None:
        box = region
    elif config.scan_crop:
        box = scan_area_box(image)
    else:
        box = (0, 0, image.shape[1], image.shape[0])
    geometry = Geometry(image.shape[:2], box, config.size, config.fit)
    image = _crop(image, box)
    mask = None if mask is None else _crop(mask, box)
    if config.text_mask:
        image = mask_marks(image)
    if config.despeckle:
        image = despeckle(image, config.despeckle)
    if config.clahe:
        image = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(image)
    image = fit_square(np.ascontiguousarray(image), config.size, fit=config.fit)
    if mask is not None:
        mask = fit_square(np.ascontiguousarray(mask), config.size, cv2.INTER_NEAREST, config.fit)
    return image, mask, geometry
