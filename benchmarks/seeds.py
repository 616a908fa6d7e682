"""One recipe cross-validated with several training seeds on the same folds.

    python benchmarks/seeds.py CV_DIR CV_DIR [CV_DIR ...]

Each CV folder is the same recipe on the same folds (`thyronet cv --seed S --set split.seed=42`),
only the training seed differing. Prints each seed's pooled out-of-fold case AUROC (95% bootstrap
interval), their mean ± std over seeds (what the recipe is expected to give, as opposed to what
one lucky or unlucky run gave), and the seeds' ensemble: every case's mean probability over the
seeds' fold models that held it out, with the paired bootstrap of the ensemble against each seed.
Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from thyronet.engine.compare import pooled_case_predictions
from thyronet.engine.metrics import binary_metrics, format_ci, mean_std, paired_bootstrap_auroc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cv_dirs", type=Path, nargs="+")
    args = parser.parse_args()
    if len(args.cv_dirs) < 2:
        parser.error("give two or more CV folders")
    pooled = [pooled_case_predictions(d) for d in args.cv_dirs]
    cases = sorted(pooled[0])
    if any(set(p) != set(cases) for p in pooled):
        print("the CVs scored different cases: not the same folds (set split.seed alike)", file=sys.stderr)
        return 1
    labels = np.array([pooled[0][c][0] for c in cases])
    probs = [np.array([p[c][1] for c in cases]) for p in pooled]
    print(f"{len(cases)} cases pooled over the folds, {len(probs)} seeds")
    aurocs = []
    for cv_dir, seed_probs in zip(args.cv_dirs, probs, strict=True):
        result = binary_metrics(labels, seed_probs)
        aurocs.append(result["auroc"])
        print(f"- {cv_dir}: case AUROC {format_ci(result)}")
    mean, std = mean_std(aurocs)
    print(f"- over seeds: {mean:.3f} ± {std:.3f} (mean ± std of the pooled AUROCs)")
    ensemble = np.mean(probs, axis=0)
    print(f"- the seeds' ensemble (mean probability): case AUROC {format_ci(binary_metrics(labels, ensemble))}")
    for cv_dir, seed_probs in zip(args.cv_dirs, probs, strict=True):
        paired = paired_bootstrap_auroc(labels, ensemble, seed_probs)
        print(f"  ensemble - {cv_dir.name}: {paired['auroc_diff']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], "
              f"p = {paired['p_value']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
