"""Predictions for new images: calibrated probability, decision at the operating threshold."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.imageio import read_image
from ..data.records import ImageRecord
from ..errors import DataError
from ..io import open_atomic
from .backends import Backend


@dataclass
class Prediction:
    """One input's answer; ``error`` is set (and the rest empty) when the file could not be read."""

    input: str
    probability: float | None = None
    decision: str | None = None
    threshold: float | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    error: str | None = None


def predict_image(backend: Backend, image: np.ndarray, name: str) -> tuple[Prediction, np.ndarray]:
    """Predict one decoded frame; returns the prediction and the preprocessed image."""
    prepared, tensor = backend.prepare(image)
    probability = float(backend.probability(backend.logits(tensor))[0])
    calibration = backend.calibration
    decision = "malignant" if probability >= calibration.threshold else "benign"
    return Prediction(name, probability, decision, calibration.threshold, calibration.val_sensitivity,
                      calibration.val_specificity), prepared


def predict_records(backend: Backend, records: Sequence[ImageRecord]) -> list[tuple[Prediction, np.ndarray | None]]:
    """Predict each record; a file that fails gets a row with its error, the others go on."""
    results = []
    for record in records:
        try:
            results.append(predict_image(backend, read_image(record.path, record.frame), str(record.path) + (
                f"#{record.frame}" if record.frame is not None else "")))
        except DataError as error:
            results.append((Prediction(str(record.path), error=error.problem), None))
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


def format_predictions(predictions: Sequence[Prediction]) -> str:
    width = max([len(p.input) for p in predictions] + [5])
    lines = [f"{'input':<{width}}  {'P(malignant)':>12}  {'decision':<9}  {'threshold':>9}"]
    for p in predictions:
        if p.error:
            lines.append(f"{p.input:<{width}}  error: {p.error}")
        else:
            lines.append(f"{p.input:<{width}}  {p.probability:>12.3f}  {p.decision:<9}  {p.threshold:>9.3f}")
    return "\n".join(lines)
