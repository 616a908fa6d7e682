"""ACR TI-RADS points of DDTI's descriptor vocabulary, and a plain sentence describing a nodule.

ACR TI-RADS (Tessler et al., J Am Coll Radiol 2017) scores composition, echogenicity, shape,
margin and echogenic foci; the sum gives the level TR1-TR5. DDTI's descriptors cover four of
the five (no shape), and its own labels follow another TI-RADS, so the points here are a reading
aid derived from (predicted) descriptors, never the label the model was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from thyronet.data.vocabulary import DESCRIPTOR_CLASSES

POINTS: dict[str, dict[str, int]] = {
    # "dense" is DDTI's word for a solid nodule without cystic parts: solid, 2 points.
    "composition": {"cystic": 0, "spongiform": 0, "predominantly cystic": 1, "predominantly solid": 1, "solid": 2, "dense": 2},
    "echogenicity": {"hyperechoic": 1, "isoechoic": 1, "hypoechoic": 2, "marked hypoechoic": 3},
    # ACR: smooth or ill-defined 0, lobulated or irregular 2 (extrathyroidal extension 3 is not in DDTI).
    "margins": {"well defined": 0, "ill defined": 0, "microlobulated": 2, "macrolobulated": 2, "spiculated": 2},
    # ACR: none 0, macrocalcifications 1, punctate echogenic foci (microcalcifications) 3.
    "calcifications": {"none": 0, "macrocalcifications": 1, "microcalcifications": 3},
}


def tirads_level(points: float) -> str:
    """ACR level for a point total: 0 TR1, 2 TR2, 3 TR3, 4-6 TR4, 7+ TR5 (1 point reads as TR2)."""
    if points >= 7:
        return "TR5"
    if points >= 4:
        return "TR4"
    if points >= 3:
        return "TR3"
    if points >= 1:
        return "TR2"
    return "TR1"


def expected_points(probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
    """Expected ACR points per item from descriptor class probabilities ((N, classes) per head)."""
    total = None
    for name, probs in probabilities.items():
        weights = np.array([POINTS[name][value] for value in DESCRIPTOR_CLASSES[name]], dtype=float)
        part = np.asarray(probs, dtype=float) @ weights
        total = part if total is None else total + part
    return np.zeros(0) if total is None else total


def most_likely_points(values: Mapping[str, str]) -> int:
    """ACR points of one nodule's (most likely) descriptor values."""
    return sum(POINTS[name][value] for name, value in values.items())


def describe(values: Mapping[str, str]) -> str:
    """'solid, hypoechoic, ill-defined margins, microcalcifications' from descriptor values."""
    parts = [values[name] for name in ("composition", "echogenicity") if name in values]
    if "margins" in values:
        parts.append(f"{values['margins'].replace('ill defined', 'ill-defined').replace('well defined', 'well-defined')} margins")
    if "calcifications" in values:
        parts.append("no calcifications" if values["calcifications"] == "none" else values["calcifications"])
    return ", ".join(parts)


# ACR TI-RADS white paper (Tessler et al., J Am Coll Radiol 2017;14:587-595): per level, the
# maximum diameter in mm from which fine-needle aspiration, and follow-up, are recommended
FNA_FOLLOW_UP_MM: dict[str, tuple[float, float] | None] = {
    "TR1": None, "TR2": None, "TR3": (25.0, 15.0), "TR4": (15.0, 10.0), "TR5": (10.0, 5.0),
}


@dataclass(frozen=True)
class Recommendation:
    action: str  # "FNA", "follow-up", "no FNA or follow-up", or "size needed"
    reason: str


def acr_recommendation(level: str, max_diameter_mm: float | None) -> Recommendation:
    """The 2017 ACR TI-RADS recommendation for a nodule of ``level`` (TR1-TR5) and size; without a
    size in millimetres, the thresholds that would apply."""
    if level not in FNA_FOLLOW_UP_MM:
        raise ValueError(f"unknown ACR TI-RADS level {level!r} (TR1-TR5)")
    thresholds = FNA_FOLLOW_UP_MM[level]
    if thresholds is None:
        return Recommendation("no FNA or follow-up", f"{level}: not suspicious, whatever its size")
    fna, follow = thresholds
    if max_diameter_mm is None:
        return Recommendation("size needed", f"{level}: FNA if >= {fna:g} mm, follow-up if >= {follow:g} mm "
                                             "(no calibrated size)")
    if max_diameter_mm >= fna:
        return Recommendation("FNA", f"{level}, {max_diameter_mm:.1f} mm >= {fna:g} mm")
    if max_diameter_mm >= follow:
        return Recommendation("follow-up", f"{level}, {max_diameter_mm:.1f} mm >= {follow:g} mm (FNA from {fna:g} mm)")
    return Recommendation("no FNA or follow-up", f"{level}, {max_diameter_mm:.1f} mm < {follow:g} mm")
