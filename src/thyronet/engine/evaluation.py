"""Scoring a set of predictions: image- and case-level metrics, calibration error, figures, CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..clinical.calibration import expected_calibration_error
from ..errors import ThyronetError
from .inference import Predictions
from .metrics import binary_metrics, case_level, format_ci
from .plots import plot_confusion, plot_reliability, plot_roc


def score(predictions: Predictions) -> dict[str, Any]:
    """Metrics at the argmax threshold 0.5 (comparable with the paper's ACC) and at the
    checkpoint's operating threshold, per image and per case (mean probability of its images)."""
    labels, probs = predictions.labels, predictions.probs
    labelled = labels >= 0
    if not labelled.any():
        raise ThyronetError("no labelled images to evaluate")
    labels, probs = labels[labelled], probs[labelled]
    case_ids = [c for c, keep in zip(predictions.case_ids, labelled, strict=False) if keep]
    _, case_labels, case_probs = case_level(case_ids, labels, probs)
    threshold = predictions.calibration.threshold
    return {
        "image": binary_metrics(labels, probs, 0.5),
        "case": binary_metrics(case_labels, case_probs, 0.5),
        "image_operating": binary_metrics(labels, probs, threshold, ci=False),
        "case_operating": binary_metrics(case_labels, case_probs, threshold, ci=False),
        "ece": expected_calibration_error(labels, probs),
        "unlabelled_images": int((~labelled).sum()),
    }


def write_evaluation(predictions: Predictions, out_dir: Path, name: str) -> dict[str, Any]:
    """Score, then write ``predictions_<name>.csv`` and the confusion, ROC and reliability PNGs."""
    result = score(predictions)
    predictions.write_csv(out_dir / f"predictions_{name}.csv")
    labels, probs = predictions.labels, predictions.probs
    labelled = labels >= 0
    case_ids = [c for c, keep in zip(predictions.case_ids, labelled, strict=False) if keep]
    _, case_labels, case_probs = case_level(case_ids, labels[labelled], probs[labelled])
    case = result["case_operating"]
    plot_confusion(case, out_dir / f"confusion_{name}.png",
                   f"{name}, per case, threshold {case['threshold']:.2f}\nsens {case['sensitivity']:.2f} spec {case['specificity']:.2f}")
    plot_roc({
        "image": (labels[labelled], probs[labelled], f"AUROC {format_ci(result['image'])}"),
        "case": (case_labels, case_probs, f"AUROC {format_ci(result['case'])}"),
    }, out_dir / f"roc_{name}.png")
    plot_reliability(labels[labelled], probs[labelled], out_dir / f"reliability_{name}.png",
                     title=f"{name}: ECE {result['ece']:.3f} (calibrated)")
    return result


def result_table(results: dict[str, dict[str, Any]]) -> str:
    """A short text table of case-level results per evaluated split."""
    lines = [f"{'split':<6} {'unit':<5} {'n':>4} {'AUROC [95% CI]':<22} {'bal.ACC':>7} {'ACC':>6} {'majority':>8} {'sens':>5} {'spec':>5}"]
    for name, result in results.items():
        for unit in ("case", "image"):
            m = result[unit]
            lines.append(
                f"{name:<6} {unit:<5} {m['n']:>4} {format_ci(m):<22} {m['balanced_acc']:>7.3f} {m['acc']:>6.3f} "
                f"{m['majority_acc']:>8.3f} {m['sensitivity']:>5.2f} {m['specificity']:>5.2f}"
            )
    lines.append("(threshold 0.5; the majority column is the accuracy of always answering the larger class)")
    return "\n".join(lines)


def nan_to_none(value: Any) -> Any:
    """JSON has no NaN: replace it by null, recursively."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
