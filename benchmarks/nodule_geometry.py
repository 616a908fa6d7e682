"""How much of DDTI's label the nodule's size, shape and place in the frame give away.

    python benchmarks/nodule_geometry.py CV_DIR [--data ../shared/data/ddti]

A region-of-interest crop letterboxes the nodule's box to a fixed size, so the network no longer
sees how large the nodule is, nor where it sits; the whole frame keeps both. This script measures
what those properties alone are worth: from the expert outline's box (largest outlined region) and
the scan area, per image, the log of the box's area as a fraction of the scan area, the log of its
height over width (ACR TI-RADS scores "taller than wide"), the box's centre within the scan area and
the scan area's own size; averaged per case, a logistic regression per feature set is fitted on
each fold's training cases of CV_DIR's folds.json (the same folds as the networks') and scored on
its held-out cases. Prints the pooled out-of-fold case AUROC with a 95% bootstrap interval per
feature set. Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from thyronet.data import open_source
from thyronet.data.imageio import read_image
from thyronet.data.preprocess import scan_area_box
from thyronet.data.region import expert_box
from thyronet.data.splits import SplitPlan
from thyronet.evaluation.metrics import binary_metrics, format_ci

FEATURES = ("log_area_fraction", "log_height_over_width", "centre_x", "centre_y", "scan_width", "scan_height")
FEATURE_SETS = {
    "size (area fraction)": ["log_area_fraction"],
    "shape (height / width)": ["log_height_over_width"],
    "size + shape": ["log_area_fraction", "log_height_over_width"],
    "place of the nodule in the scan area": ["centre_x", "centre_y"],
    "scan area's size (no nodule at all)": ["scan_width", "scan_height"],
    "all six": list(FEATURES),
}


def image_features(frame: np.ndarray, outlines) -> dict[str, float] | None:
    box = expert_box(frame.shape[:2], outlines)
    if box is None:
        return None
    sx0, sy0, sx1, sy1 = scan_area_box(frame)
    x0, y0, x1, y1 = box
    scan_w, scan_h = sx1 - sx0, sy1 - sy0
    return {
        "log_area_fraction": float(np.log((x1 - x0) * (y1 - y0) / (scan_w * scan_h))),
        "log_height_over_width": float(np.log((y1 - y0) / (x1 - x0))),
        "centre_x": ((x0 + x1) / 2 - sx0) / scan_w,
        "centre_y": ((y0 + y1) / 2 - sy0) / scan_h,
        "scan_width": float(scan_w),
        "scan_height": float(scan_h),
    }


def case_table(collection) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per labelled case with an outline: the mean of its images' features, and its label."""
    per_case: dict[str, list[list[float]]] = defaultdict(list)
    labels: dict[str, int] = {}
    for record in collection.labelled:
        features = image_features(read_image(record.path, record.frame), record.outlines)
        if features is not None:
            per_case[record.case_id].append([features[name] for name in FEATURES])
            labels[record.case_id] = record.label
    return {case: np.mean(rows, axis=0) for case, rows in per_case.items()}, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv_dir", type=Path)
    parser.add_argument("--data", default="../shared/data/ddti")
    args = parser.parse_args()
    features, labels = case_table(open_source(args.data))
    plan = SplitPlan.load(args.cv_dir / "folds.json")
    print(f"{len(features)} labelled cases with an outline; folds of {args.cv_dir}")
    for set_name, columns in FEATURE_SETS.items():
        index = [FEATURES.index(c) for c in columns]
        pooled_labels, pooled_scores = [], []
        for split in plan.splits:
            train_cases = [c for c in dict.fromkeys(split.train + split.val) if c in features]
            test_cases = [c for c in dict.fromkeys(split.test) if c in features]
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            model.fit(np.array([features[c][index] for c in train_cases]), [labels[c] for c in train_cases])
            pooled_scores.append(model.predict_proba(np.array([features[c][index] for c in test_cases]))[:, 1])
            pooled_labels.append([labels[c] for c in test_cases])
        result = binary_metrics(np.concatenate(pooled_labels), np.concatenate(pooled_scores))
        print(f"- {set_name}: pooled out-of-fold case AUROC {format_ci(result)} over {result['n']} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
