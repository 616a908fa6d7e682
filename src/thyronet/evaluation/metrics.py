"""Binary classification metrics at image and case level, with bootstrap confidence intervals.

Case level: a case's probability is the mean over its images. Every accuracy is reported with
the majority-class baseline beside it (DDTI is about 83% "malignant": 0.83 accuracy is free).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm


def case_level(case_ids: Sequence[str], labels: np.ndarray, probs: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Mean probability per case (per class, for (N, K) probabilities); every image of a case
    carries the case's label."""
    order: dict[str, list[int]] = {}
    for index, case in enumerate(case_ids):
        order.setdefault(case, []).append(index)
    cases = list(order)
    case_labels = np.array([labels[order[c][0]] for c in cases])
    case_probs = np.array([np.mean(probs[order[c]], axis=0) for c in cases], dtype=float)
    return cases, case_labels, case_probs


def rank_auroc(positives: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of ``scores`` for the items where ``positives`` holds against the others, by the
    Mann-Whitney rank sum (ties count half): sklearn's ``roc_auc_score`` without its per-call
    overhead, which the bootstrap intervals pay thousands of times. NaN when a side is empty."""
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _safe_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    return rank_auroc(np.asarray(labels) == 1, probs)


def bootstrap_indices(labels: np.ndarray, resamples: int = 2000, seed: int = 0) -> Iterator[np.ndarray]:
    """Indices of resamples with replacement; resamples holding a single class are skipped."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        if len(np.unique(labels[idx])) >= 2:
            yield idx


def bootstrap_ci(
    labels: np.ndarray, probs: np.ndarray, statistic=_safe_auroc, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over resampled items (cases)."""
    values = [statistic(labels[idx], probs[idx]) for idx in bootstrap_indices(labels, resamples, seed)]
    if not values:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5, ci: bool = True) -> dict[str, float]:
    """ACC, balanced ACC, precision, sensitivity, specificity, F1, AUROC (+95% CI) and the baseline."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=float)
    predicted = (probs >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    positives = int(labels.sum())
    result = {
        "n": len(labels),
        "n_malignant": positives,
        "threshold": float(threshold),
        "acc": float(skm.accuracy_score(labels, predicted)),
        "majority_acc": max(positives, len(labels) - positives) / max(1, len(labels)),
        "balanced_acc": float((tp / max(1, tp + fn) + tn / max(1, tn + fp)) / 2),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "sensitivity": float(tp / max(1, tp + fn)),
        "specificity": float(tn / max(1, tn + fp)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "auroc": _safe_auroc(labels, probs),
        "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp),
    }
    if ci:
        result["auroc_ci_low"], result["auroc_ci_high"] = bootstrap_ci(labels, probs)
    return result


def paired_bootstrap_auroc(
    labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """AUROC(a) - AUROC(b) on the same items: point estimate, 95% CI and two-sided p-value."""
    diffs_array = np.array([
        _safe_auroc(labels[idx], probs_a[idx]) - _safe_auroc(labels[idx], probs_b[idx])
        for idx in bootstrap_indices(labels, resamples, seed)
    ])
    p_value = 2 * min(np.mean(diffs_array <= 0), np.mean(diffs_array >= 0))
    return {
        "auroc_diff": _safe_auroc(labels, probs_a) - _safe_auroc(labels, probs_b),
        "ci_low": float(np.quantile(diffs_array, 0.025)),
        "ci_high": float(np.quantile(diffs_array, 0.975)),
        "p_value": float(min(1.0, p_value)),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(np.nanmean(array)), float(np.nanstd(array, ddof=1)) if len(array) > 1 else 0.0


def format_ci(result: dict[str, float]) -> str:
    return f"{result['auroc']:.3f} [{result['auroc_ci_low']:.3f}, {result['auroc_ci_high']:.3f}]"
