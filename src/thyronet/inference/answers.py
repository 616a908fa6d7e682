"""Predictions for new images: calibrated probability, decision at the operating threshold, and
what a radiologist reads beside it: the descriptors, the nodule's calipers, its ACR TI-RADS
categories, level and recommendation."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thyronet.data.imageio import read_image, spacing_mm
from thyronet.data.preprocess import Box
from thyronet.data.records import ImageRecord
from thyronet.data.sources import open_inputs
from thyronet.data.tirads import CATEGORIES, FROM_DESCRIPTORS, Assessment, Recommendation, assess, describe, from_descriptors, recommend
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES
from thyronet.errors import DataError, ThyronetError
from thyronet.inference.backends import Backend
from thyronet.inference.measure import Measurement, measure_mask
from thyronet.inference.predictor import FrameResult, PreparedInput
from thyronet.io import open_atomic

NOT_ASSESSED = "not assessed by the model"  # a descriptor head no better than the commonest value
OOD_WARNING = ("does not look like the thyroid ultrasound this model learnt from (out-of-distribution score "
               "{score:.2f} > 1): do not rely on this prediction")


@dataclass(frozen=True)
class Descriptor:
    """One descriptor head's answer: its most likely value and that value's probability, or, for a
    head that did not beat the commonest value on held-out images, not assessed (no value)."""

    value: str | None
    probability: float | None = None

    @property
    def assessed(self) -> bool:
        return self.value is not None

    @property
    def shown(self) -> str:
        return self.value if self.value is not None else NOT_ASSESSED


@dataclass
class Prediction:
    """One input's answer; ``error`` is set (and the rest empty) when the file could not be read.

    ``region`` says where the model looked (scan area, predicted, box) and ``box`` the nodule's
    box in the input's pixels. With descriptor heads, ``descriptors`` holds each head's answer
    (the vocabulary's categories, in its order); ``size`` is the predicted outline's calipers (mm
    where the image is calibrated); ``acr`` the ACR TI-RADS categories the model can propose (its
    descriptors in ACR's words and the outline's shape), their points and level, incomplete where
    a category is not assessed, and ``recommendation`` the ACR recommendation for that level and
    size. All of it is the model's proposal, for a radiologist to confirm.
    """

    input: str
    probability: float | None = None
    decision: str | None = None
    threshold: float | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    region: str | None = None
    box: str | None = None
    descriptors: dict[str, Descriptor] = field(default_factory=dict)
    size: Measurement | None = None
    acr: Assessment | None = None
    recommendation: Recommendation | None = None
    ood_score: float | None = None  # above 1: unlike the images the model learnt from
    warning: str | None = None
    error: str | None = None

    @property
    def source_file(self) -> Path:
        """The input's file: ``input`` less the ``#frame`` that names one frame of a multi-frame file."""
        return Path(self.input.partition("#")[0])

    @property
    def description(self) -> str | None:
        """'solid, hypoechoic, ill-defined margins, microcalcifications' from the assessed descriptors."""
        return describe({name: d.value for name, d in self.descriptors.items() if d.assessed}) or None

    @property
    def tirads_points(self) -> int | None:
        return None if self.acr is None else self.acr.points

    @property
    def tirads_level(self) -> str | None:
        return None if self.acr is None else self.acr.level

    def row(self) -> dict[str, Any]:
        """The answer as one flat row (CSV, Parquet): one column per descriptor head and ACR category."""
        row: dict[str, Any] = {name: getattr(self, name) for name in ("input", "probability", "decision", "threshold",
                                                                       "val_sensitivity", "val_specificity", "region", "box")}
        for name in DESCRIPTOR_CLASSES:
            descriptor = self.descriptors.get(name)
            row[name] = None if descriptor is None else descriptor.shown
            row[f"{name}_prob"] = None if descriptor is None else descriptor.probability
        row["description"] = self.description
        size = self.size
        row.update(long_axis=None if size is None else round(size.long_axis, 2),
                   short_axis=None if size is None else round(size.short_axis, 2),
                   area=None if size is None else round(size.area, 2), size_unit=None if size is None else size.unit,
                   taller_than_wide=None if size is None else size.taller_than_wide,
                   height_to_width=None if size is None else round(size.height_to_width, 3))
        for name in CATEGORIES:
            picked = None if self.acr is None else self.acr.values.get(name)
            row[acr_column(name)] = "; ".join(picked) if picked else None
        row.update(tirads_points=self.tirads_points, tirads_level=self.tirads_level,
                   tirads_missing="; ".join(self.acr.missing) if self.acr and self.acr.missing else None,
                   recommendation=None if self.recommendation is None else self.recommendation.action,
                   recommendation_reason=None if self.recommendation is None else self.recommendation.reason,
                   ood_score=self.ood_score, warning=self.warning, error=self.error)
        return row

    def to_dict(self) -> dict[str, Any]:
        """The answer as JSON-ready data, descriptors and ACR categories nested."""
        data = {name: value for name, value in self.row().items()
                if name not in DESCRIPTOR_CLASSES and not name.endswith("_prob") and not name.startswith("acr_")}
        data["descriptors"] = {name: {"value": d.shown, "probability": d.probability, "assessed": d.assessed}
                               for name, d in self.descriptors.items()} or None
        data["acr_tirads"] = None if self.acr is None else {
            "categories": {name: list(values) for name, values in self.acr.values.items()},
            "points": self.acr.points, "level": self.acr.level, "missing": list(self.acr.missing), "note": self.acr.note()}
        return data


def acr_column(category: str) -> str:
    """'acr_echogenic_foci': the flat column of an ACR category."""
    return "acr_" + category.replace(" ", "_")


def columns() -> dict[str, type]:
    """The flat row's columns and their types (for CSV headers and typed Parquet columns)."""
    types: dict[str, type] = {"input": str, "probability": float, "decision": str, "threshold": float,
                              "val_sensitivity": float, "val_specificity": float, "region": str, "box": str}
    for name in DESCRIPTOR_CLASSES:
        types.update({name: str, f"{name}_prob": float})
    types.update(description=str, long_axis=float, short_axis=float, area=float, size_unit=str, taller_than_wide=str,
                 height_to_width=float)
    types.update({acr_column(name): str for name in CATEGORIES})
    types.update(tirads_points=int, tirads_level=str, tirads_missing=str, recommendation=str, recommendation_reason=str,
                 ood_score=float, warning=str, error=str)
    return types


@dataclass
class Answer:
    """A prediction with the frame and model input it came from (for overlays and reports)."""

    prediction: Prediction
    frame: np.ndarray | None = None
    prepared: PreparedInput | None = None
    case: str | None = None  # the source's case (DDTI's case, a manifest's group column); None for loose inputs


def predict_image(backend: Backend, image: np.ndarray, name: str, box: Box | None = None, refuse_ood: bool = False,
                  spacing: tuple[float, float] | None = None) -> Answer:
    """Predict one decoded frame (optionally with the user's nodule box); ``spacing``: its (row,
    column) pixel spacing in mm, for calipers in mm. An input unlike the training images gets a
    warning, or with ``refuse_ood`` an error instead of a prediction."""
    return answer_result(backend, backend.predict_frame(image, box), name, image, refuse_ood, spacing)


def answer_result(backend: Backend, result: FrameResult, name: str, image: np.ndarray | None = None,
                  refuse_ood: bool = False, spacing: tuple[float, float] | None = None) -> Answer:
    """The clinical answer for one frame's model output: calibrated probability, decision at the
    operating threshold, the region, the out-of-distribution verdict, the descriptors, the
    outline's calipers and the ACR TI-RADS proposal."""
    probability, heads, prepared = result.probability, result.descriptors, result.prepared
    if result.ood_score is not None and result.ood_score > 1:
        warning = OOD_WARNING.format(score=result.ood_score)
        if refuse_ood:
            return Answer(Prediction(name, ood_score=round(result.ood_score, 3), error=f"refused: {warning}"))
    else:
        warning = None
    calibration = backend.calibration
    if calibration.warning:  # every answer of a model without a validated operating point says so
        warning = "; ".join(filter(None, (warning, calibration.warning)))
    mask = prepared.nodule_mask
    prediction = Prediction(
        name, probability, calibration.decide(probability), calibration.threshold,
        calibration.val_sensitivity, calibration.val_specificity, region=prepared.region,
        box=None if prepared.nodule_box is None else ",".join(map(str, prepared.nodule_box)),
        size=None if mask is None else measure_mask(mask, spacing),
        ood_score=None if result.ood_score is None else round(result.ood_score, 3), warning=warning,
    )
    if heads:
        prediction.descriptors = read_descriptors(heads, backend.info.get("descriptor_reliability", {}))
        assessed = {name: d.value for name, d in prediction.descriptors.items() if d.assessed and name in FROM_DESCRIPTORS}
        size = prediction.size
        prediction.acr = assess(from_descriptors(assessed, None if size is None else size.taller_than_wide))
        prediction.recommendation = recommend(prediction.acr, None if size is None else size.max_diameter_mm)
    return Answer(prediction, image, prepared)


def read_descriptors(heads: dict[str, np.ndarray], reliability: dict[str, dict[str, Any]]) -> dict[str, Descriptor]:
    """Each head's most likely value and its probability; a head the run judged no better than the
    commonest value (its descriptor reliability) is not assessed. Checkpoints from before the
    reliability was measured carry no verdict: their heads count as assessed."""
    descriptors = {}
    for name in [n for n in DESCRIPTOR_CLASSES if n in heads]:
        if not reliability.get(name, {}).get("assessed", True):
            descriptors[name] = Descriptor(None)
            continue
        probs = heads[name]
        index = int(probs.argmax())
        descriptors[name] = Descriptor(DESCRIPTOR_CLASSES[name][index], round(float(probs[index]), 4))
    return descriptors


def answer_records(backend: Backend, records: Sequence[ImageRecord], box: Box | None = None,
                   refuse_ood: bool = False) -> list[Answer]:
    """The clinical answer for each record, one file at a time so that a file that fails gets a
    row with its error and the others go on (evaluation's batched scoring is
    ``inference.predictor.predict_records``)."""
    results = []
    for record in records:
        name = str(record.path) + (f"#{record.frame}" if record.frame is not None else "")
        try:
            answer = predict_image(backend, read_image(record.path, record.frame), name, box, refuse_ood,
                                   spacing_mm(record.path))
        except DataError as error:
            answer = Answer(Prediction(name, error=error.problem))
        answer.case = record.case_id
        results.append(answer)
    return results


def write_predictions(predictions: Sequence[Prediction], path: Path) -> None:
    """CSV (one flat row each) or JSON (nested) by the file's suffix."""
    if path.suffix.lower() == ".json":
        with open_atomic(path) as handle:
            json.dump([p.to_dict() for p in predictions], handle, indent=1)
        return
    with open_atomic(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns()))
        writer.writeheader()
        writer.writerows(p.row() for p in predictions)


def tirads_note(prediction: Prediction) -> str:
    """'ACR TI-RADS 7 points, TR5, proposed from the predicted descriptors and outline', or why there is no level."""
    if prediction.acr is None:
        return "no ACR TI-RADS: the model has no descriptor heads"
    note = prediction.acr.note()
    return note if prediction.acr.level is None else f"{note}, proposed from the predicted descriptors and outline"


def size_note(size: Measurement) -> str:
    """'12.1 x 7.9 mm, taller than wide': the calipers as a radiologist writes them."""
    return f"{size.long_axis:.1f} x {size.short_axis:.1f} {size.unit}{', taller than wide' if size.taller_than_wide else ''}"


def format_predictions(predictions: Sequence[Prediction]) -> str:
    width = max([len(p.input) for p in predictions] + [5])
    lines = [f"{'input':<{width}}  {'P(malignant)':>12}  {'decision':<9}  {'threshold':>9}  region"]
    for p in predictions:
        if p.error:
            lines.append(f"{p.input:<{width}}  error: {p.error}")
        else:
            lines.append(f"{p.input:<{width}}  {p.probability:>12.3f}  {p.decision:<9}  {p.threshold:>9.3f}  {p.region}")
            if p.warning:
                lines.append(f"{'':<{width}}  warning: {p.warning}")
            if p.size is not None:
                lines.append(f"{'':<{width}}  outline: {size_note(p.size)}")
            if p.descriptors:
                lines.append(f"{'':<{width}}  predicted: {p.description or 'no descriptor assessed'} ({tirads_note(p)})")
                lines.append(f"{'':<{width}}  ACR recommendation: {p.recommendation.action}: {p.recommendation.reason}")
    return "\n".join(lines)


def predict_inputs(backend: Backend, inputs: Sequence[str | Path], box: Box | None = None,
                   refuse_ood: bool = False) -> list[Answer]:
    """Predict every input (files, folders, a source); an input that cannot be read becomes an
    answer with its error, and the others go on."""
    if not inputs:
        raise ThyronetError("no input images given")
    if box is not None and backend.config.data.roi.mode == "none":
        raise ThyronetError("--box: this model looks at the whole scan area (trained without a region of interest)")
    collection = open_inputs(list(inputs))
    answers = answer_records(backend, collection.images, box, refuse_ood)
    return answers + [Answer(Prediction(str(issue.path), error=issue.problem)) for issue in collection.issues]
