"""ACR TI-RADS as the ACR writes it, and what the model's DDTI-vocabulary descriptors say in its terms.

The ACR TI-RADS white paper (Tessler et al., J Am Coll Radiol 2017;14:587-595) scores five
categories: composition, echogenicity, shape and margin take one value each; echogenic foci take
every value that applies and their points add up. A spongiform nodule collects no points from any
other category. The total gives the level (TR1-TR5); the level and the nodule's maximum diameter
give the recommendation: fine-needle aspiration (FNA), ultrasound follow-up at the intervals the
white paper gives, or neither.

Two readings the chart leaves open are settled here and said wherever a level is written:

* a total of 1 point, which the chart does not list (TR1 is 0 points, TR2 is 2), is read as TR2,
  the more cautious neighbour; both levels recommend neither FNA nor follow-up, so the
  recommendation does not depend on it;
* a level needs every category: with one missing (a descriptor the model cannot assess, a shape
  without an outline) the assessment is *incomplete*, names what is missing and recommends
  nothing, except for a spongiform nodule, which is TR1 whatever the rest.

The model's descriptor heads speak DDTI's vocabulary (data.vocabulary), which covers four of the
five categories with fewer values (no anechoic, no extrathyroidal extension, no rim calcification,
no comet-tail artefact); :func:`from_descriptors` maps what they give onto ACR's values, and the
shape comes from the predicted outline. Those are proposals: the radiologist confirms or changes
every category, and may choose any ACR value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from thyronet.data.vocabulary import DESCRIPTOR_CLASSES


@dataclass(frozen=True)
class Category:
    """One ACR TI-RADS category: its values with their points, one value or several."""

    name: str
    points: Mapping[str, int]
    multiple: bool = False  # echogenic foci: every value that applies, points added up


CATEGORIES: dict[str, Category] = {category.name: category for category in (
    # ACR: a nodule whose composition is obscured by calcification is given 2 points
    Category("composition", {"cystic or almost completely cystic": 0, "spongiform": 0, "mixed cystic and solid": 1,
                             "solid or almost completely solid": 2, "obscured by calcification": 2}),
    # ACR: anechoic applies to cystic nodules; 1 point when the echogenicity cannot be determined
    Category("echogenicity", {"anechoic": 0, "hyperechoic": 1, "isoechoic": 1, "hypoechoic": 2, "very hypoechoic": 3,
                              "cannot be determined": 1}),
    # ACR: read on a transverse image, height parallel to the beam against width perpendicular to it
    Category("shape", {"wider-than-tall": 0, "taller-than-wide": 3}),
    # ACR: 0 points when the margin cannot be determined
    Category("margin", {"smooth": 0, "ill-defined": 0, "lobulated or irregular": 2, "extrathyroidal extension": 3,
                        "cannot be determined": 0}),
    Category("echogenic foci", {"none": 0, "large comet-tail artefacts": 0, "macrocalcifications": 1,
                                "peripheral (rim) calcifications": 2, "punctate echogenic foci": 3}, multiple=True),
)}
SPONGIFORM = "spongiform"

LEVELS = ("TR1", "TR2", "TR3", "TR4", "TR5")

# per level: (FNA from, follow-up from) in mm of maximum diameter, and the follow-up scans in years
FNA_FOLLOW_UP_MM: dict[str, tuple[float, float] | None] = {
    "TR1": None, "TR2": None, "TR3": (25.0, 15.0), "TR4": (15.0, 10.0), "TR5": (10.0, 5.0),
}
FOLLOW_UP_YEARS: dict[str, tuple[int, ...]] = {"TR3": (1, 3, 5), "TR4": (1, 2, 3, 5), "TR5": (1, 2, 3, 4, 5)}

# The model's descriptor heads (DDTI's vocabulary) in ACR's words. DDTI's "dense" is a solid nodule
# without cystic parts; its predominantly solid and predominantly cystic are both mixed.
FROM_DESCRIPTORS: dict[str, tuple[str, dict[str, str]]] = {
    "composition": ("composition", {
        "solid": "solid or almost completely solid", "dense": "solid or almost completely solid",
        "predominantly solid": "mixed cystic and solid", "predominantly cystic": "mixed cystic and solid",
        "cystic": "cystic or almost completely cystic", "spongiform": SPONGIFORM}),
    "echogenicity": ("echogenicity", {
        "hyperechoic": "hyperechoic", "isoechoic": "isoechoic", "hypoechoic": "hypoechoic",
        "marked hypoechoic": "very hypoechoic"}),
    "margins": ("margin", {
        "well defined": "smooth", "ill defined": "ill-defined", "microlobulated": "lobulated or irregular",
        "macrolobulated": "lobulated or irregular", "spiculated": "lobulated or irregular"}),
    "calcifications": ("echogenic foci", {
        "none": "none", "macrocalcifications": "macrocalcifications", "microcalcifications": "punctate echogenic foci"}),
}


def level_for_points(points: int) -> str:
    """The chart: 0 TR1, 2 TR2, 3 TR3, 4-6 TR4, 7 or more TR5; 1 (not in the chart) reads as TR2."""
    if points < 0:
        raise ValueError(f"an ACR TI-RADS total cannot be negative ({points})")
    if points >= 7:
        return "TR5"
    if points >= 4:
        return "TR4"
    if points == 3:
        return "TR3"
    return "TR2" if points >= 1 else "TR1"


def normalise_values(values: Mapping[str, str | Sequence[str] | None]) -> dict[str, tuple[str, ...]]:
    """Each given category's values as a tuple, checked against ACR's lists. Raises ``ValueError``
    naming the category and the value for an unknown one, several values of a one-value category,
    or an unknown category."""
    chosen: dict[str, tuple[str, ...]] = {}
    for name, given in values.items():
        if name not in CATEGORIES:
            raise ValueError(f"unknown ACR TI-RADS category {name!r} (expected one of {list(CATEGORIES)})")
        if given is None or (not isinstance(given, str) and len(given) == 0):
            continue
        picked = (given,) if isinstance(given, str) else tuple(dict.fromkeys(given))
        category = CATEGORIES[name]
        for value in picked:
            if value not in category.points:
                raise ValueError(f"unknown {name} value {value!r} (expected one of {list(category.points)})")
        if len(picked) > 1 and not category.multiple:
            raise ValueError(f"{name} takes one value, got {list(picked)}")
        if category.multiple and len(picked) > 1 and "none" in picked:
            raise ValueError(f"{name}: 'none' cannot go with {[v for v in picked if v != 'none']}")
        chosen[name] = picked
    return chosen


@dataclass(frozen=True)
class Recommendation:
    """What ACR TI-RADS recommends for one nodule. ``action``: "FNA", "follow-up", "no FNA or
    follow-up", "size needed" (a level but no calibrated size) or "incomplete" (no level)."""

    action: str
    reason: str
    follow_up_years: tuple[int, ...] = ()  # the follow-up scans after this one, for "follow-up"


@dataclass(frozen=True)
class Assessment:
    """One nodule's ACR TI-RADS: the values of each category, their points, the level, and what is
    missing for a level (``level`` is None then)."""

    values: dict[str, tuple[str, ...]]
    points_by_category: dict[str, int]
    points: int | None
    level: str | None
    missing: tuple[str, ...] = ()
    spongiform: bool = False

    @property
    def complete(self) -> bool:
        return self.level is not None

    def note(self) -> str:
        """'ACR TI-RADS 5 points, TR4', or why there is no level."""
        if self.level is None:
            return f"ACR TI-RADS incomplete: {', '.join(self.missing)} not assessed"
        if self.spongiform:
            return "ACR TI-RADS TR1 (spongiform: no points from the other categories)"
        note = f"ACR TI-RADS {self.points} points, {self.level}"
        return note + (" (1 point, not in the chart, read as TR2)" if self.points == 1 else "")


def assess(values: Mapping[str, str | Sequence[str] | None]) -> Assessment:
    """The ACR TI-RADS assessment of one nodule from its categories' values (a category absent or
    None is not assessed). Raises ``ValueError`` for a value ACR does not list."""
    chosen = normalise_values(values)
    by_category = {name: sum(CATEGORIES[name].points[v] for v in picked) for name, picked in chosen.items()}
    if chosen.get("composition") == (SPONGIFORM,):  # ACR: do not add further points for other categories
        return Assessment(chosen, by_category, 0, "TR1", spongiform=True)
    missing = tuple(name for name in CATEGORIES if name not in chosen)
    if missing:
        return Assessment(chosen, by_category, None, None, missing)
    points = sum(by_category.values())
    return Assessment(chosen, by_category, points, level_for_points(points))


def recommend(assessment: Assessment, max_diameter_mm: float | None) -> Recommendation:
    """The 2017 ACR recommendation for an assessed nodule of that maximum diameter; without a size
    in millimetres, the thresholds that would apply."""
    level = assessment.level
    if level is None:
        return Recommendation("incomplete", f"no level: {', '.join(assessment.missing)} not assessed")
    thresholds = FNA_FOLLOW_UP_MM[level]
    if thresholds is None:
        return Recommendation("no FNA or follow-up", f"{level}: not suspicious, whatever its size")
    fna, follow = thresholds
    years = FOLLOW_UP_YEARS[level]
    schedule = f"ultrasound at {', '.join(map(str, years[:-1]))} and {years[-1]} years"
    if max_diameter_mm is None:
        return Recommendation("size needed", f"{level}: FNA if >= {fna:g} mm, follow-up ({schedule}) if >= {follow:g} mm "
                                             "(no calibrated size)")
    if max_diameter_mm >= fna:
        return Recommendation("FNA", f"{level}, {max_diameter_mm:.1f} mm >= {fna:g} mm")
    if max_diameter_mm >= follow:
        return Recommendation("follow-up", f"{level}, {max_diameter_mm:.1f} mm >= {follow:g} mm (FNA from {fna:g} mm): "
                                           f"{schedule}", years)
    return Recommendation("no FNA or follow-up", f"{level}, {max_diameter_mm:.1f} mm < {follow:g} mm")


def significant_growth(before_mm: Sequence[float], after_mm: Sequence[float]) -> bool:
    """ACR's significant enlargement between two scans of a nodule (its dimensions in mm, same
    order): at least 20% and at least 2 mm in two or more dimensions, or 50% or more in volume
    (the product of three dimensions)."""
    before, after = np.asarray(before_mm, dtype=float), np.asarray(after_mm, dtype=float)
    if before.shape != after.shape or before.ndim != 1 or (before <= 0).any():
        raise ValueError("significant_growth needs the same positive dimensions before and after")
    grown = (after >= 1.2 * before) & (after - before >= 2.0)
    by_volume = len(before) == 3 and np.prod(after) >= 1.5 * np.prod(before)
    return bool(grown.sum() >= 2 or by_volume)


def from_descriptors(descriptors: Mapping[str, str], taller_than_wide: bool | None = None) -> dict[str, tuple[str, ...]]:
    """The ACR categories the model can propose: its descriptor heads' values (DDTI's vocabulary)
    in ACR's words, and the shape from the predicted outline (None: no outline, no shape)."""
    values: dict[str, tuple[str, ...]] = {}
    for head, value in descriptors.items():
        category, mapping = FROM_DESCRIPTORS[head]
        values[category] = (mapping[value],)
    if taller_than_wide is not None:
        values["shape"] = ("taller-than-wide" if taller_than_wide else "wider-than-tall",)
    return values


def to_descriptors(values: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Confirmed ACR values back in the heads' DDTI vocabulary, where ACR's value says which (a
    training target): "mixed cystic and solid" could be DDTI's predominantly solid or
    predominantly cystic, and "lobulated or irregular" any of three margins, so they give none;
    echogenic foci give microcalcifications whenever punctate foci are among them."""
    descriptors: dict[str, str] = {}
    for head, (category, mapping) in FROM_DESCRIPTORS.items():
        picked = list(values.get(category) or [])
        if category == "echogenic foci" and "punctate echogenic foci" in picked:
            picked = ["punctate echogenic foci"]
        if len(picked) != 1:
            continue
        sources = sorted({ddti for ddti, acr in mapping.items() if acr == picked[0]})
        if picked[0] == "solid or almost completely solid":  # DDTI's "dense" is its rarer word for a solid nodule
            descriptors[head] = "solid"
        elif len(sources) == 1:
            descriptors[head] = sources[0]
    return descriptors


@dataclass(frozen=True)
class View:
    """One view's assessed values and its measured maximum diameter in mm (None uncalibrated)."""

    values: Mapping[str, Sequence[str]]
    max_diameter_mm: float | None = None


@dataclass(frozen=True)
class NoduleAssessment:
    """One nodule across its views: one size (the largest measured), one set of categories (each
    category's most suspicious value seen in any view; echogenic foci, every kind seen), one
    level and one recommendation; each view's own assessment beside them."""

    assessment: Assessment
    max_diameter_mm: float | None
    recommendation: Recommendation
    views: list[Assessment] = field(default_factory=list)


def combine_views(views: Sequence[View]) -> NoduleAssessment:
    """One ACR TI-RADS answer for a nodule seen in several views (:class:`NoduleAssessment`)."""
    combined: dict[str, tuple[str, ...]] = {}
    for view in views:
        for name, picked in normalise_values(view.values).items():
            if CATEGORIES[name].multiple:
                union = tuple(dict.fromkeys(combined.get(name, ()) + picked))
                combined[name] = tuple(v for v in union if v != "none") or ("none",)
            elif name not in combined or CATEGORIES[name].points[picked[0]] > CATEGORIES[name].points[combined[name][0]]:
                combined[name] = picked
    sizes = [v.max_diameter_mm for v in views if v.max_diameter_mm is not None]
    size = max(sizes) if sizes else None
    assessment = assess(combined)
    return NoduleAssessment(assessment, size, recommend(assessment, size), [assess(v.values) for v in views])


def expected_points(probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
    """Expected ACR points per image from the descriptor heads' class probabilities ((N, classes)
    per head): a ranking score over the four categories the heads cover (no shape)."""
    total = None
    for head, probs in probabilities.items():
        category, mapping = FROM_DESCRIPTORS[head]
        weights = np.array([CATEGORIES[category].points[mapping[value]] for value in DESCRIPTOR_CLASSES[head]], dtype=float)
        part = np.asarray(probs, dtype=float) @ weights
        total = part if total is None else total + part
    return np.zeros(0) if total is None else total


def describe(descriptors: Mapping[str, str]) -> str:
    """'solid, hypoechoic, ill-defined margins, microcalcifications' from descriptor values."""
    parts = [descriptors[name] for name in ("composition", "echogenicity") if name in descriptors]
    if "margins" in descriptors:
        margin = descriptors["margins"].replace("ill defined", "ill-defined").replace("well defined", "well-defined")
        parts.append(f"{margin} margins")
    if "calcifications" in descriptors:
        parts.append("no calcifications" if descriptors["calcifications"] == "none" else descriptors["calcifications"])
    return ", ".join(parts)
