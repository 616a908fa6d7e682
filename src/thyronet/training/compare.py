"""Train several models on the same folds and tabulate them like the paper's Tables 1-2."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thyronet.data.records import Collection
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import paired_bootstrap_auroc
from thyronet.evaluation.tables import nan_to_none
from thyronet.io import write_text_atomic
from thyronet.models import create_model
from thyronet.models.profile import count_parameters
from thyronet.runs.config import RunConfig
from thyronet.runs.layout import CVFolder
from thyronet.training.cv import cross_validate, read_fold_predictions

log = logging.getLogger(__name__)

# The paper's Tables 1 (ablation) and 2 (peers): image-level accuracy on its own image-level,
# non-grouped split; for ThyroNet-X4 also the training accuracy and the external hospital set.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "baseline": {"val_acc": 0.6954},
    "baseline_bottleneck": {"val_acc": 0.6846},
    "baseline_block": {"val_acc": 0.7061},
    "thyronet_x4": {"train_acc": 0.8555, "val_acc": 0.7170, "external_test_acc": 0.6702},
    "vgg16_bn": {"val_acc": 0.5983},
    "alexnet": {"val_acc": 0.4952},
    "googlenet": {"val_acc": 0.5705},
    "mobilenet_v2": {"val_acc": 0.5971},
}


def pooled_case_predictions(cv_dir: Path) -> dict[str, tuple[int, float]]:
    """Case id -> (label, out-of-fold probability) over every fold of a CV folder."""
    pooled: dict[str, tuple[int, float]] = {}
    for fold in CVFolder(cv_dir).folds():
        cases, labels, probs = read_fold_predictions(fold.root)
        pooled.update({c: (int(y), float(p)) for c, y, p in zip(cases, labels, probs, strict=False)})
    return pooled


def compare(config: RunConfig, collection: Collection, models: Sequence[str], out_dir: Path, reference: str = "baseline",
            challenger: str = "thyronet_x4") -> dict[str, Any] | None:
    """Cross-validate each model on the same folds, then write ``comparison.md``/``.json``."""
    if config.multiclass:
        raise ThyronetError(f"compare pairs models by their AUROC of malignancy; data.classes {config.data.classes} "
                            "makes a multi-class task (cross-validate each model with `thyronet cv` instead)")
    summaries = {}
    for name in models:
        model_config = copy.deepcopy(config)
        model_config.model.name = name
        log.info("== %s ==", name)
        summary = cross_validate(model_config, collection, out_dir / name)
        if summary is None:
            return None
        summaries[name] = summary
    result: dict[str, Any] = {"models": summaries}
    if reference in summaries and challenger in summaries:
        a, b = pooled_case_predictions(out_dir / challenger), pooled_case_predictions(out_dir / reference)
        cases = sorted(set(a) & set(b))
        labels = np.array([a[c][0] for c in cases])
        result["paired"] = {"a": challenger, "b": reference, "cases": len(cases), **paired_bootstrap_auroc(
            labels, np.array([a[c][1] for c in cases]), np.array([b[c][1] for c in cases]))}
    write_text_atomic(out_dir / "comparison.json", json.dumps(nan_to_none(result), indent=1))
    table = format_table(result, config)
    write_text_atomic(out_dir / "comparison.md", table)
    log.info("%s\nresults: %s", table, out_dir)
    return result


def _cell(summary: dict[str, Any], key: str) -> str:
    value = summary[key]
    return f"{value['mean']:.3f} ± {value['std']:.3f}"


def format_table(result: dict[str, Any], config: RunConfig) -> str:
    preprocess = config.data.preprocess
    lines = [
        f"# Model comparison: {config.split.folds}-fold case-grouped CV on the same folds",
        "",
        f"Config: {preprocess.size} px, {config.train.epochs} epochs, seed {config.seed}. Our columns are case-level, "
        "held-out folds, mean ± std over folds, threshold 0.5. The paper's columns are image-level accuracies "
        "on its image-level split and its external set, as published; empty where not at hand.",
        "",
        "| model | params | AUROC | balanced ACC | ACC | majority ACC | sensitivity | specificity | pooled AUROC [95% CI] "
        "| paper train ACC | paper val ACC | paper external ACC |",
        "| --- | ---: | --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for name, summary in result["models"].items():
        pooled = summary["pooled_case"]
        paper = PAPER_RESULTS.get(name, {})
        params = count_parameters(create_model(name, in_chans=config.data.in_chans))
        lines.append(
            f"| {name} | {params / 1e6:.1f} M | {_cell(summary, 'case_auroc')} | {_cell(summary, 'case_balanced_acc')} "
            f"| {_cell(summary, 'case_acc')} | {_cell(summary, 'case_majority_acc')} | {_cell(summary, 'case_sensitivity')} "
            f"| {_cell(summary, 'case_specificity')} "
            f"| {pooled['auroc']:.3f} [{pooled['auroc_ci_low']:.3f}, {pooled['auroc_ci_high']:.3f}] | "
            + " | ".join(f"{paper[k]:.4f}" if k in paper else "" for k in ("train_acc", "val_acc", "external_test_acc"))
            + " |"
        )
    if "paired" in result:
        p = result["paired"]
        lines += ["", f"Paired bootstrap over {p['cases']} out-of-fold cases: AUROC({p['a']}) - AUROC({p['b']}) = "
                      f"{p['auroc_diff']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}], p = {p['p_value']:.3f}."]
    return "\n".join(lines) + "\n"
