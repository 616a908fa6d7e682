"""Segmentation metrics per image (Dice, IoU, box IoU, detection), their bootstrap summaries, a
segmenter scored on a source's outlined frames, and how well its calipers agree with the expert's.

Size agreement compares the predicted outline's long and short axes (inference.measure, as
calipers take them) with the expert outline's on the same frame: the relative error, the share
of images within 10% and 20% (inter-observer differences in nodule size are of the order of
10-15%), over every outlined image (a frame where nothing is found counts as outside), and a
Bland-Altman plot of the long axis."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from thyronet.data.imageio import read_image
from thyronet.data.preprocess import Box, outline_mask
from thyronet.data.records import ImageRecord
from thyronet.data.region import expert_box
from thyronet.evaluation.plots import plot_bland_altman
from thyronet.inference.measure import measure_mask
from thyronet.io import open_atomic

if TYPE_CHECKING:
    from thyronet.inference.segmenter import Segmenter

SEGMENTATION_KEYS = ("dice", "iou", "box_iou", "detected")
AXES = ("long_axis", "short_axis")
TOLERANCES = (0.10, 0.20)
DETECTION_IOU = 0.5  # a nodule counts as found when the predicted box overlaps an expert box this much


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """2|A∩B| / (|A| + |B|) of two masks (non-zero = foreground); 1.0 when both are empty."""
    a, b = predicted > 0, truth > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    a, b = predicted > 0, truth > 0
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1, exclusive); 0 if either is missing."""
    if a is None or b is None:
        return 0.0
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def score_segmentation(predicted: np.ndarray, predicted_box: Box | None, truth: np.ndarray,
                       truth_boxes: Sequence[Box]) -> dict[str, float]:
    """Per-image scores. Box IoU is against the best-matching expert region: a dual-view frame
    outlines the same nodule twice, and finding it in either view is finding it."""
    best = max((box_iou(predicted_box, box) for box in truth_boxes), default=0.0)
    return {"dice": dice(predicted, truth), "iou": iou(predicted, truth), "box_iou": best,
            "detected": float(best >= DETECTION_IOU)}


def summarise_segmentation(rows: Sequence[Mapping[str, float]], resamples: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean of each per-image score with a 95% percentile-bootstrap interval over images."""
    rng = np.random.default_rng(seed)
    summary: dict[str, dict[str, float]] = {}
    for key in SEGMENTATION_KEYS:
        values = np.array([row[key] for row in rows], dtype=float)
        if len(values) == 0:
            summary[key] = {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
            continue
        means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
        summary[key] = {"mean": float(values.mean()), "ci_low": float(np.quantile(means, 0.025)),
                        "ci_high": float(np.quantile(means, 0.975)), "n": len(values)}
    return summary


def size_agreement(rows: Sequence[Mapping[str, Any]], resamples: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per axis: the median relative error of the predicted calipers against the expert's (over
    the images where both were measured), and the share of all images within each tolerance, with
    95% bootstrap intervals over images; a frame where nothing was found counts as outside."""
    rng = np.random.default_rng(seed)
    agreement: dict[str, dict[str, Any]] = {}
    for axis in AXES:
        errors = np.array([abs(r[f"{axis}_px"] - r[f"expert_{axis}_px"]) / r[f"expert_{axis}_px"] if r[f"{axis}_px"] else np.inf
                           for r in rows if r[f"expert_{axis}_px"]], dtype=float)
        if len(errors) == 0:
            agreement[axis] = {"n": 0}
            continue
        picks = rng.integers(0, len(errors), (resamples, len(errors)))
        measured = errors[np.isfinite(errors)]
        entry: dict[str, Any] = {"n": len(errors), "measured": len(measured),
                                 "median_error": float(np.median(measured)) if len(measured) else float("nan")}
        for tolerance in TOLERANCES:
            within = errors <= tolerance
            shares = within[picks].mean(1)
            entry[f"within_{round(tolerance * 100)}"] = {"share": float(within.mean()), "ci_low": float(np.quantile(shares, 0.025)),
                                                         "ci_high": float(np.quantile(shares, 0.975))}
        agreement[axis] = entry
    return agreement


def format_segmentation(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A text table: one row per evaluated split, mean [95% CI] of each score, then the calipers'
    agreement with the expert's."""
    lines = [f"{'split':<6} {'n':>4}  " + "  ".join(f"{key:<22}" for key in SEGMENTATION_KEYS)]
    for name, summary in results.items():
        cells = "  ".join(f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]".ljust(22) for s in
                          (summary[k] for k in SEGMENTATION_KEYS))
        lines.append(f"{name:<6} {summary['dice']['n']:>4}  {cells}")
    lines.append(f"(per image at the frame's own resolution; detected = box IoU >= {DETECTION_IOU})")
    for name, summary in results.items():
        for axis, entry in summary.get("size_agreement", {}).items():
            if not entry.get("n"):
                continue
            within = ", ".join(f"{k.removeprefix('within_')}%: {v['share']:.0%} [{v['ci_low']:.0%}, {v['ci_high']:.0%}]"
                               for k, v in entry.items() if k.startswith("within_"))
            lines.append(f"{name:<6} {axis.replace('_', ' ')} against the expert's: median error {entry['median_error']:.0%} "
                         f"({entry['measured']} of {entry['n']} measured); within {within}")
    return "\n".join(lines)


def _axes(mask: np.ndarray) -> tuple[float | None, float | None]:
    size = measure_mask(mask)
    return (None, None) if size is None else (round(size.long_axis, 2), round(size.short_axis, 2))


def evaluate_segmenter(segmenter: Segmenter, records: Sequence[ImageRecord], out_csv: Path) -> dict[str, Any]:
    """Segment each outlined record's frame; per-image scores and calipers (predicted and expert)
    to ``out_csv`` with a Bland-Altman plot of the long axis beside it; the summary."""
    rows = []
    outlined = [r for r in records if r.outlines]
    for start in range(0, len(outlined), 16):
        chunk = outlined[start : start + 16]
        frames = [read_image(r.path, r.frame) for r in chunk]
        for record, frame, result in zip(chunk, frames, segmenter.segment(frames), strict=True):
            truth = outline_mask(frame.shape, record.outlines)
            truth_boxes = [b for b in (expert_box(frame.shape, (polygon,)) for polygon in record.outlines) if b]
            scores = score_segmentation(result.mask, result.box, truth, truth_boxes)
            (long_axis, short_axis), (expert_long, expert_short) = _axes(result.mask), _axes(truth)
            rows.append({"image": record.key, "case": record.case_id, **{k: round(v, 4) for k, v in scores.items()},
                         "box": "" if result.box is None else ",".join(map(str, result.box)),
                         "area_px": result.area, "expert_area_px": int((truth > 0).sum()),
                         "long_axis_px": long_axis, "expert_long_axis_px": expert_long,
                         "short_axis_px": short_axis, "expert_short_axis_px": expert_short})
    with open_atomic(out_csv) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["image"])
        writer.writeheader()
        writer.writerows(rows)
    summary: dict[str, Any] = summarise_segmentation(rows)
    summary["images"] = len(rows)
    summary["mean_area_ratio"] = float(np.mean([r["area_px"] / max(1, r["expert_area_px"]) for r in rows])) if rows else float("nan")
    summary["size_agreement"] = size_agreement(rows)
    both = [r for r in rows if r["long_axis_px"] and r["expert_long_axis_px"]]
    if len(both) >= 2:
        summary["bland_altman"] = str(plot_bland_altman(
            np.array([r["long_axis_px"] for r in both]), np.array([r["expert_long_axis_px"] for r in both]),
            out_csv.with_name(f"{out_csv.stem}_bland_altman.png"),
            f"long axis, predicted outline against the expert's ({len(both)} images)"))
    return summary
