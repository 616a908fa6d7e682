"""One answer per nodule: several views of one nodule (a DDTI case, a manifest's group, a DICOM
series, or file names sharing a pattern) combined as the evaluation combines a case's images.

The nodule's probability is the mean of its views' calibrated probabilities, the rule by which
the cross-validation scores cases, and its decision is that mean against the operating threshold;
each view's own answer stays beside it. With descriptor heads the nodule also gets one ACR
TI-RADS answer (data.tirads.combine_views): one size, the largest measured, each category's most
suspicious value seen in any view, one level and one recommendation. The view shown with the heat
map is the one with the largest predicted nodule (the clearest view of it), else the most probable
one.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thyronet.data.imageio import is_dicom
from thyronet.data.tirads import NoduleAssessment, View, combine_views
from thyronet.errors import ThyronetError
from thyronet.inference.answers import Answer
from thyronet.inference.backends import Backend
from thyronet.io import open_atomic

GROUP_RULES = "case, series, file or pattern:REGEX"


@dataclass
class NoduleAnswer:
    nodule: str
    views: list[Answer]
    probability: float | None  # mean of the answered views' probabilities
    decision: str | None
    shown: Answer | None  # the view for the heat map
    acr: NoduleAssessment | None = None  # one ACR TI-RADS answer across the views (descriptor heads only)

    @property
    def answered(self) -> list[Answer]:
        return _answered(self.views)

    @classmethod
    def combine(cls, backend: Backend, nodule: str, views: list[Answer]) -> NoduleAnswer:
        """One nodule's answer from its views: the mean of the answered views' probabilities, its
        decision at the backend's threshold, and the clearest view to show."""
        answered = _answered(views)
        probability = float(np.mean([v.prediction.probability for v in answered])) if answered else None
        decision = backend.calibration.decide(probability) if probability is not None else None
        assessed = [v.prediction for v in answered if v.prediction.acr is not None]
        acr = combine_views([View(p.acr.values, p.size.max_diameter_mm if p.size else None) for p in assessed]) if assessed else None
        return cls(nodule, views, probability, decision, max(answered, key=_clearest, default=None), acr)


def grouping(rule: str) -> Callable[[Answer], str]:
    """The nodule key of an answer under ``rule``: ``case`` (the source's case or group column),
    ``series`` (a DICOM's SeriesInstanceUID; other files alone), ``file`` (every input alone), or
    ``pattern:REGEX`` (the regex's first group, else its match, in the file name)."""
    if rule == "file":
        return lambda answer: answer.prediction.input
    if rule == "case":
        return lambda answer: answer.case or answer.prediction.input
    if rule == "series":
        return _series
    if rule.startswith("pattern:"):
        try:
            pattern = re.compile(rule.removeprefix("pattern:"))
        except re.error as error:
            raise ThyronetError(f"--group-by {rule!r}: not a regular expression ({error})") from None

        def by_pattern(answer: Answer) -> str:
            name = answer.prediction.source_file.name
            found = pattern.search(name)
            return (found.group(1) if found.groups() else found.group(0)) if found else name

        return by_pattern
    raise ThyronetError(f"--group-by {rule!r}: expected {GROUP_RULES}")


def _series(answer: Answer) -> str:
    import pydicom

    path = answer.prediction.source_file
    if path.is_file() and is_dicom(path):
        return str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesInstanceUID", path))
    return answer.prediction.input


def group_answers(backend: Backend, answers: Sequence[Answer], rule: str = "case") -> list[NoduleAnswer]:
    """The answers combined per nodule, in the order each nodule first appears."""
    key = grouping(rule)
    groups: dict[str, list[Answer]] = {}
    for answer in answers:
        groups.setdefault(key(answer), []).append(answer)
    return [NoduleAnswer.combine(backend, name, views) for name, views in groups.items()]


def _answered(views: Sequence[Answer]) -> list[Answer]:
    return [view for view in views if view.prediction.error is None]


def _clearest(view: Answer) -> tuple[int, float]:
    mask = view.prepared.nodule_mask if view.prepared is not None else None
    return (int((mask > 0).sum()) if mask is not None else 0, view.prediction.probability or 0.0)


def write_nodules(nodules: Sequence[NoduleAnswer], threshold: float, path: Path) -> None:
    """One CSV row per nodule: its combined answer, the views' own probabilities and the view shown."""
    with open_atomic(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(["nodule", "views", "answered", "probability", "decision", "threshold", "max_diameter_mm",
                         "tirads_points", "tirads_level", "recommendation", "view_probabilities", "shown_view", "errors"])
        for n in nodules:
            acr = n.acr
            size = None if acr is None or acr.max_diameter_mm is None else round(acr.max_diameter_mm, 2)
            writer.writerow([n.nodule, len(n.views), len(n.answered), "" if n.probability is None else round(n.probability, 4),
                             n.decision or "", threshold, "" if size is None else size,
                             "" if acr is None or acr.assessment.points is None else acr.assessment.points,
                             "" if acr is None else acr.assessment.level or "", "" if acr is None else acr.recommendation.action,
                             ";".join(f"{v.prediction.input}={v.prediction.probability:.4f}" for v in n.answered),
                             "" if n.shown is None else n.shown.prediction.input,
                             ";".join(f"{v.prediction.input}: {v.prediction.error}" for v in n.views if v.prediction.error)])


def format_nodules(nodules: Sequence[NoduleAnswer]) -> str:
    lines = []
    for n in nodules:
        views = ", ".join(f"{Path(v.prediction.input).name} {v.prediction.probability:.3f}" for v in n.answered)
        answer = "no view could be answered" if n.probability is None else f"P(malignant) {n.probability:.3f}, {n.decision}"
        lines.append(f"nodule {n.nodule}: {answer} ({len(n.answered)} of {len(n.views)} views: {views})")
        if n.acr is not None:
            lines.append(f"  {nodule_acr_note(n.acr)}")
    return "\n".join(lines)


def nodule_acr_note(acr: NoduleAssessment) -> str:
    """'ACR TI-RADS 7 points, TR5; 11.5 mm (largest view): FNA' for one nodule across its views."""
    size = "no calibrated size" if acr.max_diameter_mm is None else f"{acr.max_diameter_mm:.1f} mm (largest view)"
    return f"{acr.assessment.note()}; {size}: {acr.recommendation.action}"
