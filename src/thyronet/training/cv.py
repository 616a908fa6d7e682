"""Case-grouped K-fold cross-validation: one run per fold, resumable, pooled out-of-fold results.

Each fold's run selects its checkpoint and calibration on validation cases carved out of the
training folds; the held-out fold is scored once, as that run's test split.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from thyronet.data.records import Collection
from thyronet.data.splits import SplitPlan, kfold_plan
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, case_level, format_ci, mean_std
from thyronet.evaluation.multiclass import aggregate_multiclass, format_multiclass_summary
from thyronet.evaluation.plots import plot_roc
from thyronet.evaluation.segmetrics import SEGMENTATION_KEYS, summarise_segmentation
from thyronet.evaluation.tables import nan_to_none
from thyronet.inference.ensemble import write_ensemble
from thyronet.inference.predictor import read_prediction_rows
from thyronet.inference.segmenter import fold_segmenter
from thyronet.io import write_text_atomic
from thyronet.runs.config import RunConfig, dump_config
from thyronet.runs.layout import CVFolder, RunFolder
from thyronet.training.train import fit

log = logging.getLogger(__name__)
SUMMARY_KEYS = ("auroc", "balanced_acc", "acc", "majority_acc", "sensitivity", "specificity", "f1")


def read_fold_predictions(fold_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Case ids, labels and mean probabilities per case from a fold's ``predictions_test.csv``."""
    rows = read_prediction_rows(RunFolder(fold_dir).predictions("test"))
    labels = np.array([1 if r["label"] == "malignant" else 0 for r in rows])
    probs = np.array([float(r["prob_malignant"]) for r in rows])
    cases, case_labels, case_probs = case_level([r["case"] for r in rows], labels, probs)
    return cases, case_labels, case_probs


def fold_plan(collection: Collection, config: RunConfig, cv_dir: Path) -> SplitPlan:
    """The fold plan: the saved one when resuming (checked against the data), else a new one."""
    plan_file = CVFolder(cv_dir).plan
    plan = kfold_plan(collection, config.split.folds, config.split_seed, config.split.val_fraction)
    if plan_file.exists():
        saved = SplitPlan.load(plan_file)
        if saved.splits != plan.splits:
            raise ThyronetError(f"{plan_file}: the saved folds differ from this data/seed; use a new --out folder")
        return saved
    cv_dir.mkdir(parents=True, exist_ok=True)
    plan.save(plan_file)
    write_text_atomic(CVFolder(cv_dir).config, dump_config(config))
    return plan


def check_segmenter_folds(segmenter: str | Path | None, plan: SplitPlan) -> None:
    """A segmenter given as a CV folder serves fold k with its own fold k, which must not have
    trained on this CV's held-out cases of fold k (else the predicted region has seen them)."""
    if not segmenter or not (folder := CVFolder(Path(segmenter))).is_cv():
        return
    theirs = SplitPlan.load(folder.plan).splits
    if len(theirs) != len(plan.splits):
        raise ThyronetError(f"{segmenter}: {len(theirs)} segmenter folds for a {len(plan.splits)}-fold cross-validation")
    for index, (mine, its) in enumerate(zip(plan.splits, theirs, strict=True)):
        seen = set(mine.test) & set(its.train)
        if seen:
            raise ThyronetError(f"{segmenter}: the segmenter of fold {index} trained on {len(seen)} of this fold's held-out "
                                "cases; cross-validate the segmenter on the same folds (same data, labels and split seed)")


def cross_validate(config: RunConfig, collection: Collection, cv_dir: Path) -> dict[str, Any] | None:
    """Run (or finish) every fold, then aggregate; ``None`` if interrupted."""
    plan = fold_plan(collection, config, cv_dir)
    check_segmenter_folds(config.data.roi.segmenter, plan)
    folder = CVFolder(cv_dir)
    per_fold = []
    for index, split in enumerate(plan.splits):
        fold = folder.fold(index)
        fold_dir, results_file = fold.root, fold.results
        if results_file.exists():
            log.info("fold %d/%d: done earlier (%s)", index + 1, len(plan.splits), fold_dir)
            per_fold.append(json.loads(results_file.read_text()))
            continue
        log.info("fold %d/%d", index + 1, len(plan.splits))
        result = fit(fold_config(config, index), collection, split, fold_dir, resume=fold.last.exists())
        if not result.completed:
            log.warning("interrupted: run the same command again to continue from fold %d", index + 1)
            return None
        drop_resume_checkpoints(fold)
        per_fold.append(nan_to_none(result.results))
    fold_dirs = [folder.fold(i).root for i in range(len(plan.splits))]
    if config.task == "segment":
        summary = aggregate_segmentation(per_fold, fold_dirs, config)
        text = format_segmentation_summary(summary)
    elif config.multiclass:  # no fold ensemble: it is a clinical tool, and those are benign vs malignant
        summary = aggregate_multiclass(per_fold, fold_dirs, config)
        text = format_multiclass_summary(summary)
    else:
        summary = aggregate(per_fold, fold_dirs, config)
        text = format_summary(summary)
        summary["ensemble"] = str(write_ensemble(cv_dir, fold_dirs, config.train.target_sensitivity))
    write_text_atomic(folder.results, json.dumps(nan_to_none(summary), indent=1))
    write_text_atomic(cv_dir / "cv_summary.md", text)
    log.info("%s\nresults: %s", text, cv_dir)
    return summary


def drop_resume_checkpoints(fold: RunFolder) -> None:
    """A finished fold is never resumed: its ``last.ckpt`` (and its own segmenter's) would only
    double the folder's size (a 5-fold ThyroNet-X4 CV keeps 1.5 GB of them)."""
    for run in (fold, fold.segmenter):
        run.last.unlink(missing_ok=True)


def fold_config(config: RunConfig, fold: int) -> RunConfig:
    """The config of one fold: a segmenter given as a CV folder becomes that fold's segmenter,
    trained without the fold's held-out cases."""
    segmenter = config.data.roi.segmenter
    if not segmenter:
        return config
    fold_specific = copy.deepcopy(config)
    fold_specific.data.roi = dataclasses.replace(config.data.roi, segmenter=str(fold_segmenter(segmenter, fold)))
    return fold_specific


def aggregate_segmentation(per_fold: list[dict[str, Any]], fold_dirs: list[Path], config: RunConfig) -> dict[str, Any]:
    """Mean ± std over folds of each held-out fold's mean score, and the pooled per-image scores."""
    summary: dict[str, Any] = {"model": config.model.name, "task": "segment", "folds": len(per_fold), "seed": config.seed}
    for key in SEGMENTATION_KEYS:
        values = [fold["test"][key]["mean"] for fold in per_fold]
        mean, std = mean_std(values)
        summary[key] = {"mean": mean, "std": std, "folds": values}
    rows = [{k: float(row[k]) for k in SEGMENTATION_KEYS}
            for fold_dir in fold_dirs for row in read_prediction_rows(RunFolder(fold_dir).segments("test"))]
    summary["pooled"] = summarise_segmentation(rows)
    return summary


def format_segmentation_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"## {summary['model']}: {summary['folds']}-fold case-grouped cross-validation of segmentation (seed {summary['seed']})",
        "",
        "| metric (per image, held-out folds) | mean ± std over folds | pooled over images [95% CI] |",
        "| --- | --- | --- |",
    ]
    for key in SEGMENTATION_KEYS:
        pooled = summary["pooled"][key]
        lines.append(f"| {key} | {summary[key]['mean']:.3f} ± {summary[key]['std']:.3f} "
                     f"| {pooled['mean']:.3f} [{pooled['ci_low']:.3f}, {pooled['ci_high']:.3f}] (n = {pooled['n']}) |")
    return "\n".join(lines) + "\n"


def aggregate(per_fold: list[dict[str, Any]], fold_dirs: list[Path], config: RunConfig) -> dict[str, Any]:
    """Mean ± std of each fold's held-out case-level metrics, and the pooled out-of-fold AUROC."""
    summary: dict[str, Any] = {"model": config.model.name, "folds": len(per_fold), "seed": config.seed}
    for unit in ("case", "image"):
        for key in SUMMARY_KEYS:
            values = [fold["test"][unit][key] for fold in per_fold]
            mean, std = mean_std([np.nan if v is None else v for v in values])
            summary[f"{unit}_{key}"] = {"mean": mean, "std": std, "folds": values}
    labels, probs, cases = [], [], []
    for fold_dir in fold_dirs:
        fold_cases, fold_labels, fold_probs = read_fold_predictions(fold_dir)
        cases += fold_cases
        labels.append(fold_labels)
        probs.append(fold_probs)
    pooled_labels, pooled_probs = np.concatenate(labels), np.concatenate(probs)
    summary["pooled_case"] = binary_metrics(pooled_labels, pooled_probs, 0.5)
    summary["pooled_cases"] = len(cases)
    plot_roc({"pooled out-of-fold": (pooled_labels, pooled_probs, f"AUROC {format_ci(summary['pooled_case'])}")},
             fold_dirs[0].parent / "roc_pooled.png")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The CV result as a short Markdown table (case level, held-out folds)."""
    lines = [
        f"## {summary['model']}: {summary['folds']}-fold case-grouped cross-validation (seed {summary['seed']})",
        "",
        "| metric (case level, held-out fold) | mean ± std over folds |",
        "| --- | --- |",
    ]
    for key in SUMMARY_KEYS:
        value = summary[f"case_{key}"]
        lines.append(f"| {key} | {value['mean']:.3f} ± {value['std']:.3f} |")
    pooled = summary["pooled_case"]
    lines += ["", f"Pooled out-of-fold AUROC over {summary['pooled_cases']} cases: {format_ci(pooled)} (95% bootstrap CI)."]
    return "\n".join(lines) + "\n"
