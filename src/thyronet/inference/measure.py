"""A nodule's size from its mask, as calipers would take it: the longest axis, the longest extent
perpendicular to it, the area, and taller-than-wide, in millimetres where the spacing is known.

The axes are measured on the largest connected region's convex hull in physical coordinates
(each pixel scaled by its row and column spacing), so anisotropic pixels measure correctly. The
long axis is the hull's diameter (its two farthest points); the short axis is the hull's extent
along the perpendicular direction. Taller than wide (an ACR TI-RADS shape feature, read on a
transverse view) compares the vertical extent, depth, with the horizontal one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from thyronet.data.preprocess import largest_component


def largest_contour(mask: np.ndarray) -> np.ndarray:
    """The outer contour of the mask's largest region (non-zero = nodule) as (N, 2) float32 points
    (x, y), its straight runs reduced to their ends."""
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float32)


@dataclass(frozen=True)
class Measurement:
    long_axis: float
    short_axis: float
    area: float
    taller_than_wide: bool
    height_to_width: float
    unit: str  # "mm" when the spacing was known, else "px"
    # where a radiologist's calipers would lie, as ((x0, y0), (x1, y1)) in the image's pixels
    long_line: tuple[tuple[float, float], tuple[float, float]] | None = None
    short_line: tuple[tuple[float, float], tuple[float, float]] | None = None

    @property
    def max_diameter_mm(self) -> float | None:
        return self.long_axis if self.unit == "mm" else None


def measure_mask(mask: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> Measurement | None:
    """The size of the largest region of ``mask`` (non-zero = nodule); ``spacing_mm`` is the (row,
    column) pixel spacing, None to measure in pixels. None for an empty mask."""
    region = largest_component(np.where(mask > 0, 255, 0).astype(np.uint8))
    if not region.any():
        return None
    row_mm, col_mm = spacing_mm or (1.0, 1.0)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate(contours)[:, 0, :].astype(float) * [col_mm, row_mm]  # boundary pixel centres, physical
    hull = cv2.convexHull(points.astype(np.float32))[:, 0, :].astype(float)
    distances = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    i, j = np.unravel_index(np.argmax(distances), distances.shape)
    direction = (hull[j] - hull[i]) / max(float(distances[i, j]), 1e-9)
    normal = np.array([-direction[1], direction[0]])

    def pixel(along: np.ndarray) -> float:  # one pixel's length along a direction: centre-to-centre spans miss it
        return float(np.hypot(along[0] * col_mm, along[1] * row_mm))

    long_axis = float(distances[i, j]) + pixel(direction)
    short_axis = float(np.ptp(hull @ normal)) + pixel(normal)
    width, height = np.ptp(points[:, 0]) + col_mm, np.ptp(points[:, 1]) + row_mm
    # the short caliper crosses the long one where the hull is widest across it
    across = hull @ normal
    middle = hull[i] + direction * float(((hull[across.argmin()] + hull[across.argmax()]) / 2 - hull[i]) @ direction)
    scale = np.array([col_mm, row_mm])

    def in_pixels(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
        (x0, y0), (x1, y1) = a / scale, b / scale
        return (round(float(x0), 1), round(float(y0), 1)), (round(float(x1), 1), round(float(y1), 1))

    return Measurement(long_axis, short_axis, float(region.astype(bool).sum() * row_mm * col_mm),
                       bool(height > width), float(height / max(width, 1e-9)), "mm" if spacing_mm else "px",
                       in_pixels(hull[i], hull[j]),
                       in_pixels(middle + normal * (across.min() - middle @ normal), middle + normal * (across.max() - middle @ normal)))
