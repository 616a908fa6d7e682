"""Does the heat sit on the nodule? CAM mass inside the expert outline, and the pointing game."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


def cam_mass_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass that lies inside the outline (0..1; NaN for an empty map)."""
    total = float(heat.sum())
    return float(heat[mask > 0].sum()) / total if total > 0 else float("nan")


def pointing_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's maximum falls inside the outline."""
    return bool(mask.flat[int(np.argmax(heat))] > 0)


@dataclass
class LocalisationSummary:
    images: int
    mass_inside_mean: float
    mass_inside_std: float
    pointing_hit_rate: float
    outline_area_share: float  # what a uniform map would score on mass inside: the chance level

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> LocalisationSummary:
        masses, hits, areas = [], [], []
        for heat, mask in pairs:
            masses.append(cam_mass_inside(heat, mask))
            hits.append(pointing_hit(heat, mask))
            areas.append(float((mask > 0).mean()))
        masses_array = np.asarray(masses, float)
        return cls(len(masses), float(np.nanmean(masses_array)), float(np.nanstd(masses_array)),
                   float(np.mean(hits)), float(np.mean(areas)))
