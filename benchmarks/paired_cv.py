"""Two cross-validations on the same folds, compared case by case.

    python benchmarks/paired_cv.py CV_A CV_B

Pools each CV folder's out-of-fold case predictions (every fold's held-out test cases), checks
that both scored the same cases, and prints both pooled case AUROCs with 95% bootstrap intervals
and the paired bootstrap of AUROC(A) - AUROC(B) on the same resamples. `thyronet compare` does
this for models it trains itself; this script does it for any two finished CVs (a recipe switch,
a different initialisation). Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from thyronet.errors import DataError
from thyronet.evaluation.metrics import binary_metrics, format_ci, paired_bootstrap_auroc
from thyronet.training.compare import pooled_case_predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cv_a", type=Path)
    parser.add_argument("cv_b", type=Path)
    args = parser.parse_args()
    try:
        a, b = pooled_case_predictions(args.cv_a), pooled_case_predictions(args.cv_b)
    except DataError as error:  # a CV still running, or not a CV folder
        print(error, file=sys.stderr)
        return 1
    if set(a) != set(b):
        print(f"the two CVs scored different cases ({len(set(a) ^ set(b))} differ): not the same folds", file=sys.stderr)
        return 1
    cases = sorted(a)
    labels = np.array([a[c][0] for c in cases])
    probs_a, probs_b = (np.array([side[c][1] for c in cases]) for side in (a, b))
    print(f"{len(cases)} cases pooled over the folds")
    for name, probs in ((args.cv_a, probs_a), (args.cv_b, probs_b)):
        print(f"- {name}: case AUROC {format_ci(binary_metrics(labels, probs))}")
    paired = paired_bootstrap_auroc(labels, probs_a, probs_b)
    print(f"- A - B: {paired['auroc_diff']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], p = {paired['p_value']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
