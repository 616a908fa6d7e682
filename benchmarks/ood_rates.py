"""How often the out-of-distribution gate lets images through, by kind of image.

    python benchmarks/ood_rates.py RUN [--data ../shared/data/ddti] [--busi ../shared/data/busi]

RUN: a classification run folder (or fold folder of a CV; --segmenter gives a region-of-interest
run trained on expert boxes the segmenter that finds the nodule in new images). Prints the share of images whose
score is at most 1 (passed) for the run's held-out DDTI test images, and for images the model
should not judge: uniform and speckle-like noise, the photographs that ship with matplotlib
(cropped and mirrored into several views), and breast ultrasound (BUSI). A run trained before
the gate existed gets one fitted here, exactly as training would (printed). Not a test: the
figures go in docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from thyronet.data import open_source
from thyronet.data.imageio import read_image
from thyronet.data.splits import SplitPlan
from thyronet.inference.predictor import load_checkpoint, predict_records
from thyronet.inference.segmenter import Segmenter
from thyronet.training.train import fit_gate


def noise_frames(kind: str, count: int = 10, seed: int = 0) -> list[np.ndarray]:
    """Uniform noise, or gamma-distributed noise (first-order statistics like ultrasound speckle)."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return [rng.integers(0, 256, (360, 560), dtype=np.uint8) for _ in range(count)]
    return [np.clip(rng.gamma(2.0, 40.0, (360, 560)), 0, 255).astype(np.uint8) for _ in range(count)]


def photographs() -> list[np.ndarray]:
    """matplotlib's sample photographs, each as the whole picture, four crops and mirrored."""
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    frames = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with Image.open(folder / name) as image:
            grey = np.asarray(image.convert("L"))
        h, w = grey.shape
        views = [grey] + [grey[y : y + h // 2, x : x + w // 2] for y in (0, h // 2) for x in (0, w // 2)]
        frames += views + [v[:, ::-1].copy() for v in views]
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", default="../shared/data/ddti")
    parser.add_argument("--busi", default="../shared/data/busi")
    parser.add_argument("--busi-count", type=int, default=120, help="BUSI images, spread evenly over its classes")
    parser.add_argument("--segmenter", help="a segmentation run for a region-of-interest classifier that carries none")
    args = parser.parse_args()
    loaded = load_checkpoint(args.run)
    if args.segmenter:
        loaded.segmenter = Segmenter.load(args.segmenter)
    collection = open_source(args.data)
    split = SplitPlan.load(args.run / "split.json").splits[0]
    if loaded.gate is None:
        val = predict_records(loaded, [r for r in collection.subset(split.val) if r.label is not None])
        loaded.gate = fit_gate(loaded, [r for r in collection.subset(split.train) if r.label is not None], val.features)
        print("(this run predates the gate: fitted here on its training and validation images, as training would)")
    test = predict_records(loaded, [r for r in collection.subset(split.test) if r.label is not None])
    rows = [("DDTI held-out test images", (test.ood_scores <= 1).mean(), len(test.records))]
    busi = sorted(p for p in Path(args.busi).rglob("*.jpg") if "_mask" not in p.name)[:: max(1, 624 // args.busi_count)]
    groups = {"uniform noise": noise_frames("uniform"), "speckle-like (gamma) noise": noise_frames("gamma"),
              "photographs (matplotlib samples, views)": photographs(),
              "breast ultrasound (BUSI)": [read_image(p) for p in busi]}
    for name, frames in groups.items():
        scores = [result.ood_score for result in loaded.predict_batch(frames)]
        rows.append((name, float(np.mean([s <= 1 for s in scores])), len(frames)))
    print(f"run {args.run}, model {loaded.name}, region {loaded.config.data.roi.mode}")
    print("| images | n | passed the gate |\n| --- | ---: | ---: |")
    for name, rate, n in rows:
        print(f"| {name} | {n} | {rate:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
