"""PNG figures: training curves (paper's Fig. 2), confusion matrix (Fig. 3), ROC, reliability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from thyronet.io import atomic_path


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    """Loss and the task's measures per epoch (accuracy and AUROC, Dice, or pretraining's pair
    accuracy), train beside validation."""
    epochs = [row["epoch"] for row in history]
    keys = {k.split("/", 1)[1] for row in history for k in row if "/" in k}
    panels = [(key, title) for key, title in (("loss", "Loss"), ("acc", "Accuracy"), ("auroc", "AUROC"), ("dice", "Dice"),
                                                  ("pair_acc", "Pair accuracy (views matched)"))
              if key in keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            values = [row.get(f"{split}/{key}", np.nan) for row in history]
            if not np.all(np.isnan(np.asarray(values, float))):
                axis.plot(epochs, values, style, marker=".", label=split)
        if key == "auroc":
            values = [row.get("val/auroc_case", np.nan) for row in history]
            axis.plot(epochs, values, ":", marker=".", label="val (case)")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    return _save(fig, path)


def plot_confusion(result: Mapping[str, float], path: Path, title: str) -> Path:
    """The benign-vs-malignant confusion matrix of :func:`~thyronet.evaluation.metrics.binary_metrics`."""
    matrix = np.array([[result["tn"], result["fp"]], [result["fn"], result["tp"]]])
    return plot_confusion_matrix(matrix, ("benign", "malignant"), path, title)


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path, title: str) -> Path:
    """Counts of true class (rows) against predicted class (columns)."""
    matrix = np.asarray(matrix)
    size = 2.2 + 0.8 * len(names)
    fig, axis = plt.subplots(figsize=(size, size * 0.9))
    axis.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black", fontsize=13)
    ticks = list(range(len(names)))
    axis.set_xticks(ticks, names)
    axis.set_yticks(ticks, names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, str]], path: Path) -> Path:
    """One ROC curve per entry: name -> (labels, probabilities, legend suffix)."""
    fig, axis = plt.subplots(figsize=(4.4, 4.2))
    for name, (labels, probs, suffix) in curves.items():
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, probs)
        axis.plot(fpr, tpr, label=f"{name} {suffix}")
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    return _save(fig, path)


def plot_reliability(labels: np.ndarray, probs: np.ndarray, path: Path, bins: int = 10, title: str = "") -> Path:
    """Observed malignancy rate against predicted probability, per probability bin."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges) - 1, 0, bins - 1)
    centres, observed, counts = [], [], []
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            centres.append(probs[chosen].mean())
            observed.append(labels[chosen].mean())
            counts.append(int(chosen.sum()))
    fig, axis = plt.subplots(figsize=(4.4, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
    axis.plot(centres, observed, marker="o", label="model")
    for x, y, n in zip(centres, observed, counts, strict=False):
        axis.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axis.set_xlabel("predicted probability of malignancy")
    axis.set_ylabel("observed fraction malignant")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _save(fig, path)


def plot_bland_altman(predicted: np.ndarray, expert: np.ndarray, path: Path, title: str, unit: str = "px") -> Path:
    """Bland-Altman plot of a measurement against the expert's: the relative difference
    (predicted - expert) / mean, in percent, against the mean of the two, with the bias, the 95%
    limits of agreement and the +-10% band within which readers usually agree."""
    mean = (predicted + expert) / 2
    difference = 100 * (predicted - expert) / mean
    bias, spread = float(difference.mean()), float(1.96 * difference.std(ddof=1)) if len(difference) > 1 else 0.0
    fig, axis = plt.subplots(figsize=(5.6, 4.0))
    axis.axhspan(-10, 10, color="tab:green", alpha=0.12, label="within 10%")
    axis.scatter(mean, difference, s=10, alpha=0.7)
    axis.axhline(bias, color="tab:red", lw=1, label=f"bias {bias:+.1f}%")
    for limit in (bias - spread, bias + spread):
        axis.axhline(limit, color="tab:red", ls="--", lw=0.8)
    axis.plot([], [], color="tab:red", ls="--", lw=0.8, label=f"95% limits {bias - spread:+.0f}% to {bias + spread:+.0f}%")
    axis.set_xlabel(f"mean of predicted and expert ({unit})")
    axis.set_ylabel("(predicted - expert) / mean, %")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8, loc="upper right")
    axis.grid(alpha=0.3)
    return _save(fig, path)
