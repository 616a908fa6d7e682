"""Recipes cross-validated with several training seeds each, on the same folds.

    python benchmarks/seeds.py default=CV,CV,CV ema=CV,CV [...] [--plot seeds.png] [--json out.json]
                               [--region predicted]

Each NAME=CV,CV,... lists one recipe's CV folders, which differ only in the training seed
(`thyronet cv --seed S --set split.seed=42`), and every folder must hold the same folds. Per
recipe: each seed's pooled out-of-fold case AUROC (95% bootstrap interval), their mean ± std over
seeds (what the recipe is expected to give, as opposed to what one lucky or unlucky run gave), and
the seeds' ensemble (every case's mean probability over the seeds' fold models that held it out).
With several recipes, each recipe's ensemble is compared with the first recipe's on the same cases
(paired bootstrap): averaging over seeds removes most of the reseeding noise that makes one run per
recipe unreadable on DDTI. ``--plot`` draws every seed's AUROC, the mean and the ensemble per
recipe. ``--region predicted`` scores each CV on the segmenter's boxes instead of its own
out-of-fold predictions: the cases' scores that `benchmarks/region_cv.py` wrote into the CV
folder (CV/region_cases.csv). Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from thyronet.errors import DataError
from thyronet.evaluation.metrics import binary_metrics, format_ci, mean_std, paired_bootstrap_auroc
from thyronet.training.compare import pooled_case_predictions


def recipe_argument(text: str) -> tuple[str, list[Path]]:
    name, _, folders = text.partition("=")
    if not name or not folders:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=CV_DIR[,CV_DIR...]")
    return name, [Path(f) for f in folders.split(",")]


def region_case_predictions(cv_dir: Path, region: str) -> dict[str, tuple[int, float]]:
    """Case id -> (label, probability on ``region``'s box) from benchmarks/region_cv.py's file."""
    path = cv_dir / "region_cases.csv"
    if not path.is_file():
        raise DataError(path, "not found: score this CV on the segmenter's boxes first (benchmarks/region_cv.py)")
    with path.open(newline="") as handle:
        return {row["case"]: (int(row["label"]), float(row[region])) for row in csv.DictReader(handle)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", type=recipe_argument, nargs="+", metavar="NAME=CV,CV,...")
    parser.add_argument("--plot", type=Path, help="PNG of every seed's pooled AUROC per recipe")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--region", choices=["own", "expert", "predicted"], default="own",
                        help="whose box each case is scored on: the CV's own predictions (default), or "
                             "benchmarks/region_cv.py's scores on the expert's or the segmenter's box")
    args = parser.parse_args()
    scores = pooled_case_predictions if args.region == "own" else lambda d: region_case_predictions(d, args.region)
    try:
        pooled = {name: [scores(d) for d in dirs] for name, dirs in args.recipes}
    except DataError as error:  # a CV still running, or not a CV folder
        print(error, file=sys.stderr)
        return 1
    cases = sorted(next(iter(pooled.values()))[0])
    if any(set(p) != set(cases) for runs in pooled.values() for p in runs):
        print("the CVs scored different cases: not the same folds (give every run split.seed alike)", file=sys.stderr)
        return 1
    labels = np.array([next(iter(pooled.values()))[0][c][0] for c in cases])
    print(f"{len(cases)} cases pooled over the folds")
    figures, ensembles = {}, {}
    for (name, dirs), runs in zip(args.recipes, pooled.values(), strict=True):
        probs = [np.array([run[c][1] for c in cases]) for run in runs]
        aurocs = [binary_metrics(labels, p)["auroc"] for p in probs]
        ensembles[name] = np.mean(probs, axis=0)
        ensemble = binary_metrics(labels, ensembles[name])
        mean, std = mean_std(aurocs)
        figures[name] = {"runs": [str(d) for d in dirs], "aurocs": aurocs, "mean": mean, "std": std, "ensemble": ensemble}
        print(f"\n{name}: {len(dirs)} seeds, pooled AUROC {mean:.3f} ± {std:.3f} ({', '.join(f'{a:.3f}' for a in aurocs)}); "
              f"the seeds' ensemble {format_ci(ensemble)}")
    first = args.recipes[0][0]
    for name in list(ensembles)[1:]:
        paired = paired_bootstrap_auroc(labels, ensembles[name], ensembles[first])
        figures[name]["ensemble_vs_first"] = paired
        print(f"ensemble {name} - ensemble {first}: {paired['auroc_diff']:+.3f} [{paired['ci_low']:+.3f}, "
              f"{paired['ci_high']:+.3f}], p = {paired['p_value']:.3f}")
    if args.plot:
        plot(figures, args.plot)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


def plot(figures: dict[str, dict], path: Path) -> None:
    fig, axis = plt.subplots(figsize=(1.2 + 1.1 * len(figures), 3.8))
    for x, result in enumerate(figures.values()):
        axis.scatter([x] * len(result["aurocs"]), result["aurocs"], color="grey", s=18, label="one seed" if x == 0 else None)
        axis.errorbar(x, result["mean"], yerr=result["std"], fmt="o", color="tab:blue", capsize=4,
                      label="mean ± std over seeds" if x == 0 else None)
        axis.scatter(x + 0.15, result["ensemble"]["auroc"], marker="*", s=90, color="tab:orange",
                     label="the seeds' ensemble" if x == 0 else None)
    axis.set_xticks(range(len(figures)), list(figures), rotation=20)
    axis.set_ylabel("pooled out-of-fold case AUROC")
    axis.set_title("one recipe, several training seeds, same folds", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
