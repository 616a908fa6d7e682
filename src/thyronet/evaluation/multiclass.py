"""Multi-class classification (``data.classes`` with more than two names, such as BUSI's benign,
malignant and normal): metrics, a run's held-out evaluation and a cross-validation's pooled result.

A softmax over the classes, scored by the macro one-vs-rest AUROC (each class against the rest,
averaged over classes), balanced accuracy (recall averaged over classes), macro-F1, each class's
recall and each pair of classes' AUROC, at image and case level (a case's probabilities are its
images' mean). There is no calibration and no operating threshold: those, and the clinical tools
built on them (predict, serve, evaluate, export), concern a benign-vs-malignant classifier's
probability of malignancy.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import softmax
from sklearn import metrics as skm

from thyronet.evaluation.metrics import bootstrap_ci, case_level, format_ci, mean_std, rank_auroc
from thyronet.evaluation.plots import plot_confusion_matrix
from thyronet.inference.predictor import Predictions, read_prediction_rows
from thyronet.io import open_atomic
from thyronet.runs.config import RunConfig
from thyronet.runs.layout import RunFolder

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
SUMMARY_KEYS = ("auroc", "balanced_acc", "acc", "majority_acc", "f1")


def one_vs_rest_auroc(labels: np.ndarray, probs: np.ndarray, index: int) -> float:
    """AUROC of class ``index`` against all others (NaN when the labels hold only one side)."""
    return rank_auroc(labels == index, probs[:, index])


def macro_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """The one-vs-rest AUROC averaged over the classes present in ``labels``."""
    values = [one_vs_rest_auroc(labels, probs, k) for k in range(probs.shape[1])]
    return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")


def pairwise_auroc(labels: np.ndarray, probs: np.ndarray, first: int, second: int) -> float:
    """AUROC of telling class ``second`` from class ``first`` among the items of those two classes,
    by the share p_second / (p_first + p_second) (Hand & Till's pairwise AUROC): for BUSI, benign vs
    malignant among the tumours, comparable with a two-class classifier's AUROC."""
    both = (labels == first) | (labels == second)
    share = probs[both, second] / np.maximum(probs[both, first] + probs[both, second], 1e-12)
    return rank_auroc(labels[both] == second, share)


def multiclass_metrics(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str], ci: bool = True) -> dict[str, Any]:
    """Accuracy (beside always answering the largest class), balanced accuracy, macro-F1 (``f1``),
    macro one-vs-rest AUROC (+95% bootstrap CI), each class's recall and AUROC, each pair of
    classes' AUROC, and the confusion matrix (rows true, columns predicted) of the most probable class."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=float)
    predicted = probs.argmax(1)
    classes = list(range(len(class_names)))
    matrix = skm.confusion_matrix(labels, predicted, labels=classes)
    support = matrix.sum(1)
    recall = np.diag(matrix) / np.maximum(support, 1)
    present = [k for k in classes if support[k]]
    result: dict[str, Any] = {
        "n": len(labels),
        "classes": list(class_names),
        "acc": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "majority_acc": float(support.max() / max(1, len(labels))),
        "balanced_acc": float(recall[present].mean()) if present else float("nan"),
        "f1": float(skm.f1_score(labels, predicted, labels=present, average="macro", zero_division=0)),
        "auroc": macro_auroc(labels, probs),
        "per_class": {name: {"n": int(support[k]), "recall": float(recall[k]), "auroc": one_vs_rest_auroc(labels, probs, k)}
                      for k, name in enumerate(class_names)},
        "pairwise_auroc": {f"{a} vs {b}": pairwise_auroc(labels, probs, i, j)
                           for i, a in enumerate(class_names) for j, b in enumerate(class_names) if i < j},
        "confusion": matrix.tolist(),
    }
    if ci:
        result["auroc_ci_low"], result["auroc_ci_high"] = bootstrap_ci(labels, probs, macro_auroc)
    return result


def write_multiclass_csv(predictions: Predictions, class_names: Sequence[str], path: Path) -> None:
    """One row per image: its true and most probable class, and every class's probability."""
    probs = softmax(predictions.logits, axis=1)
    with open_atomic(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "case", "label", "predicted", *[f"prob_{name}" for name in class_names], "region"])
        for index, record in enumerate(predictions.records):
            writer.writerow([
                record.key, record.case_id, "" if record.label is None else class_names[record.label],
                class_names[int(probs[index].argmax())], *[f"{p:.4f}" for p in probs[index]],
                predictions.regions[index] if predictions.regions else "",
            ])


def read_case_probabilities(path: Path, class_names: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Case ids, labels and mean class probabilities per case from a multi-class predictions CSV."""
    rows = [r for r in read_prediction_rows(path) if r["label"]]
    labels = np.array([class_names.index(r["label"]) for r in rows])
    probs = np.array([[float(r[f"prob_{name}"]) for name in class_names] for r in rows])
    return case_level([r["case"] for r in rows], labels, probs)


def evaluate_side(predictions: Predictions, class_names: Sequence[str], run_dir: Path, side: str) -> dict[str, Any]:
    """Score one side's predictions per image and per case; write its CSV and case confusion PNG."""
    path = RunFolder(run_dir).predictions(side)
    write_multiclass_csv(predictions, class_names, path)
    labelled = predictions.labels >= 0
    labels, probs = predictions.labels[labelled], softmax(predictions.logits[labelled], axis=1)
    case_ids = [c for c, keep in zip(predictions.case_ids, labelled, strict=True) if keep]
    _, case_labels, case_probs = case_level(case_ids, labels, probs)
    case = multiclass_metrics(case_labels, case_probs, class_names)
    plot_confusion_matrix(np.array(case["confusion"]), class_names, run_dir / f"confusion_{side}.png",
                          f"{side}, per case, most probable class\nbalanced ACC {case['balanced_acc']:.2f}")
    return {"image": multiclass_metrics(labels, probs, class_names), "case": case}


def aggregate_multiclass(per_fold: list[dict[str, Any]], fold_dirs: list[Path], config: RunConfig) -> dict[str, Any]:
    """Mean ± std over folds of each held-out fold's case-level metrics, and the pooled out-of-fold
    metrics with their confusion matrix (``confusion_pooled.png``)."""
    names = config.class_names
    summary: dict[str, Any] = {"model": config.model.name, "classes": list(names), "folds": len(per_fold), "seed": config.seed}
    for key in SUMMARY_KEYS:
        values = [fold["test"]["case"][key] for fold in per_fold]
        mean, std = mean_std([np.nan if v is None else v for v in values])
        summary[f"case_{key}"] = {"mean": mean, "std": std, "folds": values}
    parts = [read_case_probabilities(RunFolder(d).predictions("test"), names) for d in fold_dirs]
    labels, probs = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
    summary["pooled_case"] = pooled = multiclass_metrics(labels, probs, names)
    summary["pooled_cases"] = len(labels)
    plot_confusion_matrix(np.array(pooled["confusion"]), names, fold_dirs[0].parent / "confusion_pooled.png",
                          f"pooled out-of-fold, per case\nbalanced ACC {pooled['balanced_acc']:.2f}")
    return summary


def format_multiclass_summary(summary: dict[str, Any]) -> str:
    names = summary["classes"]
    lines = [
        f"## {summary['model']}: {summary['folds']}-fold case-grouped cross-validation, {len(names)} classes "
        f"({', '.join(names)}; seed {summary['seed']})",
        "",
        "| metric (case level, held-out fold) | mean ± std over folds |",
        "| --- | --- |",
    ]
    for key in SUMMARY_KEYS:
        value = summary[f"case_{key}"]
        label = {"auroc": "macro one-vs-rest AUROC", "f1": "macro-F1"}.get(key, key)
        lines.append(f"| {label} | {value['mean']:.3f} ± {value['std']:.3f} |")
    pooled = summary["pooled_case"]
    lines += ["", f"Pooled out-of-fold over {summary['pooled_cases']} cases: macro AUROC {format_ci(pooled)} (95% bootstrap CI), "
              f"balanced ACC {pooled['balanced_acc']:.3f}, ACC {pooled['acc']:.3f} (majority {pooled['majority_acc']:.3f}).", "",
              "| class | cases | recall | one-vs-rest AUROC |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {c['n']} | {c['recall']:.3f} | {c['auroc']:.3f} |" for name, c in pooled["per_class"].items()]
    lines += ["", "Pairs of classes (among the cases of the two, by the share of the second's probability): "
              + ", ".join(f"{pair} {value:.3f}" for pair, value in pooled["pairwise_auroc"].items()) + "."]
    return "\n".join(lines) + "\n"
