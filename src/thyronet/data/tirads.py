"""ACR TI-RADS points of DDTI's descriptor vocabulary, and a plain sentence describing a nodule.

ACR TI-RADS (Tessler et al., J Am Coll Radiol 2017) scores composition, echogenicity, shape,
margin and echogenic foci; the sum gives the level TR1-TR5. DDTI's descriptors cover four of
the five (no shape), and its own labels follow another TI-RADS, so the points here are a reading
aid derived from (predicted) descriptors, never the label the model was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping

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
