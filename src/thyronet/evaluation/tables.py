"""Scoring a set of predictions: image- and case-level metrics, calibration error, figures, CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score

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
        kappa_low, kappa_high = _kappa_interval(truth, predicted)
        result[name] = {
            "n": int(len(truth)),
            "acc": float((predicted == truth).mean()),
            "balanced_acc": float(balanced_accuracy_score(truth, predicted)),
            "majority_balanced_acc": 1.0 / len(np.unique(truth)),  # always the commonest value: one class in k right
            "kappa": float(cohen_kappa_score(truth, predicted)) if len(np.unique(np.r_[truth, predicted])) > 1 else 0.0,
            "kappa_ci_low": kappa_low, "kappa_ci_high": kappa_high,
            "macro_f1": float(f1_score(truth, predicted, average="macro", labels=np.unique(truth), zero_division=0)),
            "majority_acc": float(counts.max() / len(truth)),
            "majority_macro_f1": float(f1_score(truth, np.full_like(truth, counts.argmax()), average="macro",
                                                labels=np.unique(truth), zero_division=0)),
        }
    return result


def _kappa_interval(truth: np.ndarray, predicted: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of Cohen's kappa (images resampled; a resample of one class counts as 0)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(truth), len(truth))
        both = np.r_[truth[pick], predicted[pick]]
        values.append(cohen_kappa_score(truth[pick], predicted[pick]) if len(np.unique(both)) > 1 else 0.0)
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def descriptor_reliability(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per descriptor head, whether it is reliable enough to be shown as a finding: its agreement
    with the expert beyond chance is shown (Cohen's kappa's 95% interval above 0) and its balanced
    accuracy beats always answering the commonest value. Stored with the run; a head that fails
    is reported as "not assessed by the model"."""
    reliability = {}
    for name, head in scores.items():
        if not head.get("n"):
            reliability[name] = {"assessed": False, "n": 0, "reason": "no held-out image with this descriptor"}
            continue
        assessed = head["kappa_ci_low"] > 0 and head["balanced_acc"] > head["majority_balanced_acc"]
        reliability[name] = {
            "assessed": bool(assessed), "n": head["n"], "balanced_acc": head["balanced_acc"],
            "majority_balanced_acc": head["majority_balanced_acc"], "kappa": head["kappa"],
            "kappa_ci": [head["kappa_ci_low"], head["kappa_ci_high"]], "acc": head["acc"], "majority_acc": head["majority_acc"],
        }
    return reliability


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


def headline(results: dict[str, Any]) -> str:
    """The lines a run ends with: the held-out case AUROC with its 95% interval and the benign and
    malignant cases it rests on, a plain warning when the interval includes 0.5, and the operating
    point's warning if it was refused."""
    side = "test" if "test" in results else "val"
    case = results[side]["case"]
    malignant = case["n_malignant"]
    lines = [f"{side}: case AUROC {format_ci(case)} on {case['n']} cases ({case['n'] - malignant} benign, {malignant} malignant)"
             + ("" if side == "test" else "; no test split: validation also chose the threshold")]
    low, high = case.get("auroc_ci_low"), case.get("auroc_ci_high")
    if low is None or high is None or np.isnan(low) or low <= 0.5 <= high:
        lines.append(f"warning: the 95% interval includes 0.5: on these {side} cases the model is not shown to rank "
                     "malignant nodules above benign ones better than chance")
    warning = (results.get("calibration") or {}).get("warning")
    if warning:
        lines.append(f"warning: {warning}")
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
