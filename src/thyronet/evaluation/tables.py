"""Scoring a set of predictions: image- and case-level metrics, calibration error, figures, CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from thyronet.data.tirads import expected_points
from thyronet.data.vocabulary import DESCRIPTORS, MISSING, descriptor_targets
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, case_level, format_ci
from thyronet.evaluation.plots import plot_confusion, plot_reliability, plot_roc
from thyronet.inference.calibration import expected_calibration_error
from thyronet.inference.predictor import Predictions
from thyronet.runs.layout import RunFolder


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
    result = {
        "image": binary_metrics(labels, probs, 0.5),
        "case": binary_metrics(case_labels, case_probs, 0.5),
        "image_operating": binary_metrics(labels, probs, threshold, ci=False),
        "case_operating": binary_metrics(case_labels, case_probs, threshold, ci=False),
        "ece": expected_calibration_error(labels, probs),
        "unlabelled_images": int((~labelled).sum()),
    }
    if predictions.ood_scores is not None:  # how many of these (in-distribution) images the gate lets through
        result["ood_pass_rate"] = float((predictions.ood_scores <= 1).mean())
    if predictions.descriptors:
        result["descriptors"] = score_descriptors(predictions)
        points = expected_points({k: v[labelled] for k, v in predictions.descriptors.items()})
        _, _, case_points = case_level(case_ids, labels, points)
        # ranks cases by the ACR points the predicted descriptors imply: does the descriptor route carry the label?
        result["case_tirads_points_auroc"] = binary_metrics(case_labels, case_points, 0.5)["auroc"]
    return result


def score_descriptors(predictions: Predictions) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of each descriptor head over the images whose descriptor is known,
    beside the accuracy of always answering the most frequent value."""
    targets = np.array([descriptor_targets(dict(r.attributes)) for r in predictions.records]).reshape(-1, len(DESCRIPTORS))
    result = {}
    for column, name in enumerate(DESCRIPTORS):
        if name not in predictions.descriptors:
            continue
        known = targets[:, column] != MISSING
        truth = targets[known, column]
        predicted = predictions.descriptors[name][known].argmax(1)
        if len(truth) == 0:
            result[name] = {"n": 0}
            continue
        counts = np.bincount(truth)
        result[name] = {
            "n": int(len(truth)),
            "acc": float((predicted == truth).mean()),
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=np.unique(truth), zero_division=0)),
            "majority_acc": float(counts.max() / len(truth)),
            "majority_macro_f1": float(f1_score(truth, np.full_like(truth, counts.argmax()), average="macro",
                                                labels=np.unique(truth), zero_division=0)),
        }
    return result


def write_evaluation(predictions: Predictions, out_dir: Path, name: str) -> dict[str, Any]:
    """Score, then write ``predictions_<name>.csv`` and the confusion, ROC and reliability PNGs."""
    result = score(predictions)
    predictions.write_csv(RunFolder(out_dir).predictions(name))
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


def result_table(results: dict[str, dict[str, Any]], multiclass: bool = False) -> str:
    """A short text table of case- and image-level results per evaluated split: sensitivity and
    specificity for benign vs malignant, macro-F1 (and the macro AUROC) for more classes."""
    tail = [("macro-F1", "f1", 8, ".3f")] if multiclass else [("sens", "sensitivity", 5, ".2f"), ("spec", "specificity", 5, ".2f")]
    auroc = "macro AUROC [95% CI]" if multiclass else "AUROC [95% CI]"
    lines = [f"{'split':<6} {'unit':<5} {'n':>4} {auroc:<22} {'bal.ACC':>7} {'ACC':>6} {'majority':>8}"
             + "".join(f" {title:>{width}}" for title, _, width, _ in tail)]
    for name, result in results.items():
        for unit in ("case", "image"):
            m = result[unit]
            lines.append(f"{name:<6} {unit:<5} {m['n']:>4} {format_ci(m):<22} {m['balanced_acc']:>7.3f} {m['acc']:>6.3f} "
                         f"{m['majority_acc']:>8.3f}" + "".join(f" {m[key]:>{width}{spec}}" for _, key, width, spec in tail))
    decision = "the most probable class" if multiclass else "threshold 0.5"
    lines.append(f"({decision}; the majority column is the accuracy of always answering the largest class)")
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
