"""Predicted versus expert region of interest, over the folds of a classification CV.

    python benchmarks/region_cv.py CV_DIR SEG_CV_DIR [--data ../shared/data/ddti] [--tta hflip]

CV_DIR: a `thyronet cv` folder of a region-of-interest classifier (data.roi.mode expert or
predicted). SEG_CV_DIR: a `thyronet cv --config segment` folder made with the same seed and
folds, so that fold k's segmenter never saw fold k's held-out cases. Each fold's classifier scores
its held-out cases twice, on the expert outline's box and on the segmenter's; the script prints
and writes (CV_DIR/region_comparison.json and .md) the pooled out-of-fold case AUROC of both with
95% bootstrap intervals, their paired difference, and the pooled figures of the TI-RADS points
implied by the predicted descriptors; CV_DIR/region_cases.csv keeps every case's two scores (for
`benchmarks/seeds.py --region predicted`). Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from thyronet.data import open_source
from thyronet.data.splits import SplitPlan
from thyronet.data.tirads import expected_points
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, case_level, format_ci, paired_bootstrap_auroc
from thyronet.evaluation.tables import nan_to_none
from thyronet.inference.predictor import load_checkpoint, predict_records
from thyronet.inference.segmenter import Segmenter, fold_segmenter
from thyronet.io import open_atomic, write_text_atomic


def pooled(labels: list[np.ndarray], probs: list[np.ndarray], cases: list[list[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Case-level labels and scores over all folds (a case's score is its images' mean)."""
    all_cases, all_labels, all_probs = [], [], []
    for fold_cases, fold_labels, fold_probs in zip(cases, labels, probs, strict=True):
        ids, y, p = case_level(fold_cases, fold_labels, fold_probs)
        all_cases += ids
        all_labels.append(y)
        all_probs.append(p)
    return all_cases, np.concatenate(all_labels), np.concatenate(all_probs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dir", type=Path)
    parser.add_argument("seg_cv_dir", type=Path)
    parser.add_argument("--data", default="../shared/data/ddti")
    parser.add_argument("--tta", choices=["none", "hflip"], default="none", help="test-time augmentation (default: none)")
    args = parser.parse_args()
    collection = open_source(args.data)
    plan = SplitPlan.load(args.cv_dir / "folds.json")
    scores: dict[str, dict[str, list]] = {mode: {"labels": [], "probs": [], "cases": [], "points": []} for mode in ("expert", "predicted")}
    for fold, split in enumerate(plan.splits):
        loaded = load_checkpoint(args.cv_dir / f"fold-{fold}")
        records = [r for r in collection.subset(split.test) if r.label is not None]
        segmenter = Segmenter.load(fold_segmenter(args.seg_cv_dir, fold))
        base = loaded.config
        for mode in ("expert", "predicted"):
            loaded.config = copy.deepcopy(base)
            loaded.config.data.roi = dataclasses.replace(base.data.roi, mode=mode)
            loaded.config.inference.tta = args.tta
            loaded.segmenter = segmenter if mode == "predicted" else None
            predictions = predict_records(loaded, records)
            scores[mode]["labels"].append(predictions.labels)
            scores[mode]["probs"].append(predictions.probs)
            scores[mode]["cases"].append(predictions.case_ids)
            if predictions.descriptors:
                scores[mode]["points"].append(expected_points(predictions.descriptors))
            regions = {r: predictions.regions.count(r) for r in set(predictions.regions)}
            print(f"fold {fold}: {mode:<9} {len(records)} images, regions {regions}", flush=True)
    result = {"cv_dir": str(args.cv_dir), "seg_cv_dir": str(args.seg_cv_dir), "tta": args.tta}
    pooled_probs = {}
    for mode, parts in scores.items():
        cases, labels, probs = pooled(parts["labels"], parts["probs"], parts["cases"])
        pooled_probs[mode] = (cases, labels, probs)
        result[mode] = binary_metrics(labels, probs)
        if parts["points"]:
            _, _, points = pooled(parts["labels"], parts["points"], parts["cases"])
            result[f"{mode}_tirads_points"] = binary_metrics(labels, points)
    (cases, labels, expert), (_, _, predicted) = pooled_probs["expert"], pooled_probs["predicted"]
    result["paired_predicted_minus_expert"] = paired_bootstrap_auroc(labels, predicted, expert)
    lines = [f"Pooled out-of-fold case AUROC over {len(cases)} cases ({args.cv_dir.name}, segmenters {args.seg_cv_dir.name}, "
             f"test-time augmentation {args.tta}):", ""]
    for key in ("expert", "predicted", "expert_tirads_points", "predicted_tirads_points"):
        if key in result:
            lines.append(f"- {key.replace('_', ' ')}: {format_ci(result[key])}, balanced ACC at 0.5 {result[key]['balanced_acc']:.3f}")
    paired = result["paired_predicted_minus_expert"]
    lines.append(f"- predicted - expert: {paired['auroc_diff']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], "
                 f"p = {paired['p_value']:.3f}")
    text = "\n".join(lines) + "\n"
    print(text)
    suffix = "" if args.tta == "none" else f"_tta-{args.tta}"
    write_text_atomic(args.cv_dir / f"region_comparison{suffix}.md", text)
    write_text_atomic(args.cv_dir / f"region_comparison{suffix}.json", json.dumps(nan_to_none(result), indent=1))
    with open_atomic(args.cv_dir / f"region_cases{suffix}.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "label", "expert", "predicted"])
        writer.writerows(zip(cases, labels.tolist(), expert.tolist(), predicted.tolist(), strict=True))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ThyronetError as error:  # an unfinished or missing CV folder, in one line
        sys.exit(str(error))
