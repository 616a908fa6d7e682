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
from typing import TYPE_CHECKING

import cv2
import numpy as np

from thyronet.data.preprocess import largest_component
from thyronet.data.tirads import Recommendation, acr_recommendation

if TYPE_CHECKING:
    from thyronet.inference.answers import Answer


@dataclass(frozen=True)
class Measurement:
    long_axis: float
    short_axis: float
    area: float
    taller_than_wide: bool
    height_to_width: float
    unit: str  # "mm" when the spacing was known, else "px"

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
    return Measurement(long_axis, short_axis, float(region.astype(bool).sum() * row_mm * col_mm),
                       bool(height > width), float(height / max(width, 1e-9)), "mm" if spacing_mm else "px")


@dataclass(frozen=True)
class NoduleFindings:
    """What the report says of one nodule beside the network's probability."""

    measurement: Measurement | None
    recommendation: Recommendation | None  # None without descriptor heads (no TI-RADS level)


def findings(answer: Answer, spacing_mm: tuple[float, float] | None) -> NoduleFindings:
    """The nodule's size from its predicted mask and, where the model predicts descriptors, the ACR
    recommendation for the level they imply and that size."""
    mask = answer.prepared.nodule_mask if answer.prepared is not None else None
    measurement = measure_mask(mask, spacing_mm) if mask is not None else None
    level = answer.prediction.tirads_level
    recommendation = acr_recommendation(level, measurement.max_diameter_mm if measurement else None) if level else None
    return NoduleFindings(measurement, recommendation)
