"""Predictions for new images: calibrated probability, decision at the operating threshold."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from thyronet.data.imageio import read_image
from thyronet.data.preprocess import Box
from thyronet.data.records import ImageRecord
from thyronet.data.sources import open_inputs
from thyronet.data.tirads import describe, most_likely_points, tirads_level
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES
from thyronet.errors import DataError, ThyronetError
from thyronet.inference.backends import Backend
from thyronet.inference.predictor import FrameResult, PreparedInput
from thyronet.io import open_atomic


@dataclass
class Prediction:
    """One input's answer; ``error`` is set (and the rest empty) when the file could not be read.

    ``region`` says where the model looked (scan area, predicted, box) and ``box`` the nodule's
    box in the input's pixels; with descriptor heads, each descriptor's most likely value and its
    probability, one sentence, and the ACR TI-RADS points and level those values imply.
    """

    input: str
    probability: float | None = None
    decision: str | None = None
    threshold: float | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    region: str | None = None
    box: str | None = None
    composition: str | None = None
    composition_prob: float | None = None
    echogenicity: str | None = None
    echogenicity_prob: float | None = None
    margins: str | None = None
    margins_prob: float | None = None
    calcifications: str | None = None
    calcifications_prob: float | None = None
    description: str | None = None
    tirads_points: int | None = None  # derived from the predicted descriptors, not a radiologist's score
    tirads_level: str | None = None
    ood_score: float | None = None  # above 1: unlike the images the model learnt from
    warning: str | None = None
    error: str | None = None

    @property
    def source_file(self) -> Path:
        """The input's file: ``input`` less the ``#frame`` that names one frame of a multi-frame file."""
        return Path(self.input.partition("#")[0])


@dataclass
class Answer:
    """A prediction with the frame and model input it came from (for overlays and reports)."""

    prediction: Prediction
    frame: np.ndarray | None = None
    prepared: PreparedInput | None = None
    case: str | None = None  # the source's case (DDTI's case, a manifest's group column); None for loose inputs


NOT_ASSESSED = "not assessed by the model"  # a descriptor head no better than the commonest value
OOD_WARNING = ("does not look like the thyroid ultrasound this model learnt from (out-of-distribution score "
               "{score:.2f} > 1): do not rely on this prediction")


def predict_image(backend: Backend, image: np.ndarray, name: str, box: Box | None = None, refuse_ood: bool = False) -> Answer:
    """Predict one decoded frame (optionally with the user's nodule box). An input unlike the
    training images gets a warning, or with ``refuse_ood`` an error instead of a prediction."""
    return answer_result(backend, backend.predict_frame(image, box), name, image, refuse_ood)


def answer_result(backend: Backend, result: FrameResult, name: str, image: np.ndarray | None = None,
                  refuse_ood: bool = False) -> Answer:
    """The clinical answer for one frame's model output: calibrated probability, decision at the
    operating threshold, the region, the out-of-distribution verdict and the descriptors."""
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
    prediction = Prediction(
        name, probability, calibration.decide(probability), calibration.threshold,
        calibration.val_sensitivity, calibration.val_specificity, region=prepared.region,
        box=None if prepared.nodule_box is None else ",".join(map(str, prepared.nodule_box)),
        ood_score=None if result.ood_score is None else round(result.ood_score, 3), warning=warning,
    )
    if heads:
        # a head that did not beat the commonest value on held-out images (the run's descriptor
        # reliability) is no finding; checkpoints from before it was measured have no verdict
        reliability = backend.info.get("descriptor_reliability", {})
        values = {}
        for head, probs in heads.items():
            if not reliability.get(head, {}).get("assessed", True):
                setattr(prediction, head, NOT_ASSESSED)
                continue
            index = int(probs.argmax())
            values[head] = DESCRIPTOR_CLASSES[head][index]
            setattr(prediction, head, values[head])
            setattr(prediction, f"{head}_prob", round(float(probs[index]), 4))
        prediction.description = describe(values) or None
        if len(values) == len(heads):  # TI-RADS points only from a complete set of assessed categories
            prediction.tirads_points = most_likely_points(values)
            prediction.tirads_level = tirads_level(prediction.tirads_points)
    return Answer(prediction, image, prepared)


def answer_records(backend: Backend, records: Sequence[ImageRecord], box: Box | None = None,
                   refuse_ood: bool = False) -> list[Answer]:
    """The clinical answer for each record, one file at a time so that a file that fails gets a
    row with its error and the others go on (evaluation's batched scoring is
    ``inference.predictor.predict_records``)."""
    results = []
    for record in records:
        name = str(record.path) + (f"#{record.frame}" if record.frame is not None else "")
        try:
            answer = predict_image(backend, read_image(record.path, record.frame), name, box, refuse_ood)
        except DataError as error:
            answer = Answer(Prediction(name, error=error.problem))
        answer.case = record.case_id
        results.append(answer)
    return results


def write_predictions(predictions: Sequence[Prediction], path: Path) -> None:
    """CSV or JSON by the file's suffix."""
    rows = [asdict(p) for p in predictions]
    if path.suffix.lower() == ".json":
        with open_atomic(path) as handle:
            json.dump(rows, handle, indent=1)
        return
    with open_atomic(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else list(Prediction.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)


def tirads_note(prediction: Prediction) -> str:
    """'ACR TI-RADS 7 points, TR5, derived from the predicted descriptors', or why there is no level."""
    if prediction.tirads_level is None:
        return f"no ACR TI-RADS level: a category is {NOT_ASSESSED}"
    return f"ACR TI-RADS {prediction.tirads_points} points, {prediction.tirads_level}, derived from the predicted descriptors"


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
            if any(getattr(p, head) is not None for head in DESCRIPTOR_CLASSES):  # a model with descriptor heads
                lines.append(f"{'':<{width}}  predicted: {p.description or 'no descriptor assessed'} ({tirads_note(p)})")
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
