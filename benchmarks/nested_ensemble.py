"""The fold ensemble's own figures, by nested cross-validation.

    python benchmarks/nested_ensemble.py CV_DIR OUT [--outer 0 1 2 3 4] [--inner 4] [--data ../shared/data/ddti]
                                         [--set KEY=VALUE ...]

A CV folder is also a deployable model, the ensemble of its fold models, but it cannot be scored on
its own data: every case trained four of its five members. Nested instead: for each outer fold k of
CV_DIR, `thyronet cv` with CV_DIR's config (and fold k's segmenter, which never saw fold k) runs on
fold k's training and validation cases only, in OUT/outer-k; its fold ensemble then scores fold k's
held-out cases, which none of its members saw, beside CV_DIR's single model of fold k on the same
cases. Each member trains on fewer cases than the deployed ensemble's members (an inner fold's
training share of an outer fold's), so the estimate is conservative.

Prints and writes OUT/nested_ensemble.json and .md: per outer fold and pooled over the folds
done, the case AUROC of the ensemble and of the single model, and their paired difference. Runs
resume (each inner CV is a `thyronet cv` folder). Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from thyronet.apps.cli import configure_logging
from thyronet.data import open_source
from thyronet.data.records import Collection
from thyronet.data.splits import SplitPlan
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, case_level, format_ci, paired_bootstrap_auroc
from thyronet.evaluation.tables import nan_to_none
from thyronet.inference.backends import load_backend
from thyronet.inference.predictor import predict_records
from thyronet.io import write_text_atomic
from thyronet.runs.config import load_config
from thyronet.training.cv import cross_validate, fold_config, read_fold_predictions


def without_cases(collection: Collection, held_out: set[str]) -> Collection:
    """The collection less the held-out cases (their unlabelled neighbours stay)."""
    return Collection(collection.root, collection.source, [r for r in collection.images if r.case_id not in held_out])


def outer_fold(cv_dir: Path, out: Path, fold: int, collection: Collection, inner: int, overrides: list[str]) -> dict | None:
    """Ensemble and single-model case scores on outer fold ``fold``'s held-out cases."""
    config = fold_config(load_config(str(cv_dir / "config.yaml"), overrides), fold)  # a single segmenter: fold k's, for every inner fold
    config.split.folds = inner
    test = SplitPlan.load(cv_dir / "folds.json").splits[fold].test
    inner_dir = out / f"outer-{fold}"
    if cross_validate(config, without_cases(collection, set(test)), inner_dir) is None:
        return None
    records = [r for r in collection.subset(test) if r.label is not None]
    predictions = predict_records(load_backend(inner_dir).predictor, records)
    cases, labels, ensemble = case_level(predictions.case_ids, predictions.labels, predictions.probs)
    single_cases, _, single = read_fold_predictions(cv_dir / f"fold-{fold}")
    order = {case: i for i, case in enumerate(single_cases)}
    if set(order) != set(cases):
        sys.exit(f"fold {fold}: {cv_dir}/fold-{fold} scored other cases than its split's test side")
    single = single[[order[c] for c in cases]]
    return {"cases": cases, "labels": labels.tolist(), "ensemble": ensemble.tolist(), "single": single.tolist()}


def compare(labels: np.ndarray, ensemble: np.ndarray, single: np.ndarray) -> dict:
    return {"cases": len(labels), "ensemble": binary_metrics(labels, ensemble), "single": binary_metrics(labels, single),
            "ensemble_minus_single": paired_bootstrap_auroc(labels, ensemble, single)}


def table(result: dict) -> str:
    lines = ["| outer fold | cases | single model (CV_DIR) | fold ensemble (nested) | ensemble minus single, paired |",
             "| --- | ---: | --- | --- | --- |"]
    for name, row in result.items():
        diff = row["ensemble_minus_single"]
        lines.append(f"| {name} | {row['cases']} | {format_ci(row['single'])} | {format_ci(row['ensemble'])} "
                     f"| {diff['auroc_diff']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}], p = {diff['p_value']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--outer", type=int, nargs="+", help="outer folds to run (default: all)")
    parser.add_argument("--inner", type=int, default=4, help="inner folds, i.e. ensemble members (default: %(default)s)")
    parser.add_argument("--data", default="../shared/data/ddti")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of CV_DIR's config, e.g. trainer.threads=1 (repeatable)")
    args = parser.parse_args()
    configure_logging()  # each inner fold's progress, as `thyronet cv` shows it
    collection = open_source(args.data)
    folds = args.outer if args.outer is not None else range(len(SplitPlan.load(args.cv_dir / "folds.json").splits))
    result, pooled = {}, {"labels": [], "ensemble": [], "single": []}
    for fold in folds:
        scores = outer_fold(args.cv_dir, args.out, fold, collection, args.inner, args.overrides)
        if scores is None:
            print("interrupted: run the same command again to continue", file=sys.stderr)
            return 130
        for key in pooled:
            pooled[key] += scores[key]
        result[f"{fold}"] = compare(*(np.array(scores[k]) for k in ("labels", "ensemble", "single")))
    if len(result) > 1:
        result["pooled"] = compare(*(np.array(pooled[k]) for k in ("labels", "ensemble", "single")))
    text = table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "nested_ensemble.json", json.dumps(nan_to_none(result), indent=1))
    write_text_atomic(args.out / "nested_ensemble.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ThyronetError as error:  # an unfinished or missing CV folder, in one line
        sys.exit(str(error))
