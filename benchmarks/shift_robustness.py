"""How the fold models of a CV hold up when the images look as if another scanner made them.

    python benchmarks/shift_robustness.py CV_DIR [CV_DIR ...] [--data ../shared/data/ddti]
        [--region expert | --segmenters SEG_CV] [--plot shift.png]

Each CV_DIR is a `thyronet cv` folder of a benign-vs-malignant classifier whose checkpoints carry
what they need (the segmenter of a predicted region travels in the checkpoint). Every fold's model
scores its own held-out images once as they are and once under each simulated acquisition change
below, applied to the whole frame before anything (segmenter included) sees it: gain, gamma,
contrast, blur, speckle, half resolution, heavy JPEG compression. Another hospital differs in all
of these at once and in what no filter imitates (probe, preset, patients), so this is a floor on
fragility, not a stand-in for an external test set.

Per change, pooled out-of-fold over the folds (and, with several CV folders, over the seeds' ensemble:
a case's mean probability over the folders): case AUROC with its 95% bootstrap interval and its
paired difference to the unchanged images; the mean calibrated probability; sensitivity and
specificity at each fold's own threshold (the failure seen on another hospital's images was "malignant
for everything": specificity falling to 0); and the share of images the out-of-distribution gate
flags. ``--region expert`` crops every image on the expert outline's box instead of the segmenter's
(a predicted-region model), to tell the classifier's fragility from the segmenter's;
``--segmenters SEG_CV`` gives fold k's model the segmenter of fold k of another segmentation CV
made on the same folds (say, one trained with other normalisation). Writes
shift_robustness[_expert|_SEG_CV].{md,json} into the first CV_DIR. Not a test: the figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from thyronet.data import open_source
from thyronet.data.splits import SplitPlan
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, case_level, format_ci, paired_bootstrap_auroc
from thyronet.evaluation.tables import nan_to_none
from thyronet.inference.predictor import load_checkpoint, predict_records
from thyronet.inference.segmenter import Segmenter, fold_segmenter
from thyronet.io import write_text_atomic
from thyronet.training.cv import check_segmenter_folds

Alter = Callable[[np.ndarray, int], np.ndarray]


def _clip(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _resample(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape
    small = Image.fromarray(image).resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.BILINEAR)
    return np.asarray(small.resize((width, height), Image.BILINEAR))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("L"))


def _speckle(image: np.ndarray, position: int, strength: float) -> np.ndarray:
    noise = np.random.default_rng(position).standard_normal(image.shape)
    return _clip(image * (1.0 + strength * noise))


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:
    mean = image.mean()
    return _clip((image.astype(np.float64) - mean) * factor + mean)


SHIFTS: dict[str, Alter] = {
    "unchanged": lambda image, _: image,
    "gain x0.7 (darker)": lambda image, _: _clip(image * 0.7),
    "gain x1.3 (brighter)": lambda image, _: _clip(image * 1.3),
    "gamma 0.7": lambda image, _: _clip(255.0 * (image / 255.0) ** 0.7),
    "gamma 1.5": lambda image, _: _clip(255.0 * (image / 255.0) ** 1.5),
    "contrast x0.7": lambda image, _: _contrast(image, 0.7),
    "blur (sigma 1.5 px)": lambda image, _: _clip(gaussian_filter(image.astype(np.float64), 1.5)),
    "speckle (0.25)": lambda image, position: _speckle(image, position, 0.25),
    "half resolution": lambda image, _: _resample(image, 0.5),
    "JPEG quality 20": lambda image, _: _jpeg(image, 20),
}


def score_cv(cv_dir: Path, collection, shifts: dict[str, Alter], region: str | None = None,
             segmenters: Path | None = None) -> dict[str, dict[str, dict]]:
    """shift -> case id -> (label, mean probability, fold's threshold, share of its images the gate
    flags); ``region`` ("expert"), where given, replaces the models' own region of interest, and
    ``segmenters`` (a segmentation CV folder) their own segmenters."""
    plan = SplitPlan.load(cv_dir / "folds.json")
    check_segmenter_folds(segmenters, plan)  # none may have trained on its fold's held-out cases
    scored: dict[str, dict[str, dict]] = {name: {} for name in shifts}
    for fold, split in enumerate(plan.splits):
        loaded = load_checkpoint(cv_dir / f"fold-{fold}")
        if region is not None:
            loaded.config.data.roi = dataclasses.replace(loaded.config.data.roi, mode=region)
        if segmenters is not None:
            loaded.segmenter = Segmenter.load(fold_segmenter(segmenters, fold))
        records = [r for r in collection.subset(split.test) if r.label is not None]
        for name, alter in shifts.items():
            predictions = predict_records(loaded, records, alter=alter)
            flagged = (np.zeros(len(records)) if predictions.ood_scores is None
                       else (predictions.ood_scores > 1.0).astype(float))
            cases, labels, probs = case_level(predictions.case_ids, predictions.labels, predictions.probs)
            _, _, flagged_share = case_level(predictions.case_ids, predictions.labels, flagged)
            for case, label, prob, share in zip(cases, labels, probs, flagged_share, strict=True):
                scored[name][case] = {"label": int(label), "prob": float(prob), "flagged": float(share),
                                      "threshold": float(loaded.calibration.threshold)}
        print(f"{cv_dir.name} fold {fold}: {len(records)} images x {len(shifts)} conditions", flush=True)
    return scored


def summarise(runs: list[dict[str, dict[str, dict]]]) -> dict[str, dict]:
    """Per shift: the (seed-averaged) case figures, paired against the unchanged images."""
    cases = sorted(runs[0]["unchanged"])
    labels = np.array([runs[0]["unchanged"][c]["label"] for c in cases])

    def mean_over_runs(shift: str, key: str) -> np.ndarray:
        return np.mean([[run[shift][c][key] for c in cases] for run in runs], axis=0)

    # a decision per run at its fold's threshold, then the share of runs calling the case malignant
    def called(shift: str) -> np.ndarray:
        return np.mean([[run[shift][c]["prob"] >= run[shift][c]["threshold"] for c in cases] for run in runs], axis=0)

    reference = mean_over_runs("unchanged", "prob")
    result = {}
    for shift in runs[0]:
        probs = mean_over_runs(shift, "prob")
        decisions = called(shift) >= 0.5
        figures = binary_metrics(labels, probs)
        figures.update(
            mean_prob=float(probs.mean()),
            sensitivity_at_threshold=float(decisions[labels == 1].mean()),
            specificity_at_threshold=float(1 - decisions[labels == 0].mean()),
            flagged_by_gate=float(mean_over_runs(shift, "flagged").mean()),
        )
        if shift != "unchanged":
            figures["paired_minus_unchanged"] = paired_bootstrap_auroc(labels, probs, reference)
        result[shift] = figures
    return result


def table(result: dict[str, dict], title: str) -> str:
    lines = [title, "", "| images | case AUROC [95% CI] | minus unchanged, paired | mean probability | "
             "sensitivity / specificity at the folds' thresholds | flagged by the gate |", "| --- | --- | --- | ---: | --- | ---: |"]
    for shift, figures in result.items():
        paired = figures.get("paired_minus_unchanged")
        difference = (f"{paired['auroc_diff']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], p = {paired['p_value']:.2f}"
                      if paired else "")
        lines.append(f"| {shift} | {format_ci(figures)} | {difference} | {figures['mean_prob']:.2f} | "
                     f"{figures['sensitivity_at_threshold']:.2f} / {figures['specificity_at_threshold']:.2f} | "
                     f"{figures['flagged_by_gate']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, dict], path: Path, title: str) -> None:
    names = list(result)
    y = np.arange(len(names))[::-1]
    auroc = np.array([result[n]["auroc"] for n in names])
    low = auroc - np.array([result[n]["auroc_ci_low"] for n in names])
    high = np.array([result[n]["auroc_ci_high"] for n in names]) - auroc
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.4 * len(names) + 1.4), sharey=True)
    left.errorbar(auroc, y, xerr=[low, high], fmt="o", capsize=3)
    left.axvline(result["unchanged"]["auroc"], color="grey", lw=0.8, ls="--")
    left.axvline(0.5, color="red", lw=0.8, ls=":")
    left.set(yticks=y, yticklabels=names, xlabel="pooled case AUROC (95% CI)")
    fig.suptitle(title)
    for key, marker, label in (("sensitivity_at_threshold", "^", "sensitivity"), ("specificity_at_threshold", "v", "specificity")):
        right.plot([result[n][key] for n in names], y, marker, label=label)
    right.set(xlim=(-0.05, 1.05), xlabel="at the folds' thresholds")
    right.legend(loc="center")  # the middle stays empty: sensitivity sits high, specificity low
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cv_dirs", type=Path, nargs="+", metavar="CV_DIR")
    parser.add_argument("--data", default="../shared/data/ddti")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", choices=["expert"], help="crop on the expert outline's box, not the models' own region")
    where.add_argument("--segmenters", type=Path, metavar="SEG_CV", help="fold k's segmenter from this segmentation CV")
    parser.add_argument("--plot", type=Path, help="PNG of the AUROC, sensitivity and specificity per change")
    args = parser.parse_args()
    missing = [d for d in args.cv_dirs if not (d / "folds.json").is_file()]
    if missing:
        print(f"{missing[0]}: not a `thyronet cv` folder (no folds.json)", file=sys.stderr)
        return 1
    collection = open_source(args.data)
    try:
        runs = [score_cv(d, collection, SHIFTS, args.region, args.segmenters) for d in args.cv_dirs]
    except ThyronetError as error:  # an unfinished CV, or segmenters made on other folds
        print(error, file=sys.stderr)
        return 1
    result = summarise(runs)
    title = (f"Simulated acquisition changes, {result['unchanged']['n']} cases pooled over the folds"
             f" of {', '.join(d.name for d in args.cv_dirs)}" + (" (the seeds' ensemble)" if len(runs) > 1 else "")
             + (", cropped on the expert outline's box" if args.region else "")
             + (f", segmenters of {args.segmenters.name}" if args.segmenters else ""))
    text = table(result, title)
    print(text)
    stem = "shift_robustness" + (f"_{args.region}" if args.region else f"_{args.segmenters.name}" if args.segmenters else "")
    write_text_atomic(args.cv_dirs[0] / f"{stem}.md", text)
    write_text_atomic(args.cv_dirs[0] / f"{stem}.json", json.dumps(nan_to_none(result), indent=1))
    if args.plot:
        seeds = f" and {len(runs) - 1} more seeds" if len(runs) > 1 else ""
        plot(result, args.plot, f"{args.cv_dirs[0].name}{seeds}: held-out images, changed as by another scanner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
