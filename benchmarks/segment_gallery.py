"""A picture of good and bad segmentations from a segmentation CV folder.

    python benchmarks/segment_gallery.py SEG_CV_DIR --out docs/img/segment-cases.png [--data ../shared/data/ddti]

Takes the held-out images of every fold (segments_test.csv), picks the best and the worst by
Dice, segments each again with its own fold's model and draws the expert outline (yellow) and
the predicted contour (green) on the frame, with the image name and Dice above it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from thyronet.data import open_source
from thyronet.data.imageio import read_image
from thyronet.data.preprocess import outline_mask
from thyronet.inference.segmenter import Segmenter
from thyronet.io import atomic_path


def tile(frame: np.ndarray, truth: np.ndarray, predicted: np.ndarray, caption: str, width: int = 280) -> Image.Image:
    rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    for mask, colour in ((truth, (255, 200, 0)), (predicted, (0, 230, 120))):
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, colour, 2)
    image = Image.fromarray(rgb)
    image = image.resize((width, round(image.height * width / image.width)), Image.BILINEAR)
    out = Image.new("RGB", (image.width, image.height + 16), "white")
    out.paste(image, (0, 16))
    ImageDraw.Draw(out).text((3, 2), caption, fill="black")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seg_cv_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("segment-cases.png"))
    parser.add_argument("--data", default="../shared/data/ddti")
    parser.add_argument("--each", type=int, default=4, help="how many best and worst images")
    args = parser.parse_args()
    records = {r.key: r for r in open_source(args.data).images}
    rows = []
    for fold_dir in sorted(d for d in args.seg_cv_dir.glob("fold-*") if (d / "segments_test.csv").is_file()):
        with open(fold_dir / "segments_test.csv", newline="") as handle:
            rows += [(float(row["dice"]), row["image"], fold_dir) for row in csv.DictReader(handle)]
    rows.sort()
    chosen = rows[-args.each:][::-1] + rows[: args.each]
    tiles = []
    for dice_value, name, fold_dir in chosen:
        record = records[name]
        frame = read_image(record.path, record.frame)
        result = Segmenter.load(fold_dir)(frame)
        tiles.append(tile(frame, outline_mask(frame.shape, record.outlines), result.mask, f"{name}  Dice {dice_value:.2f}"))
    columns = args.each
    width, height = tiles[0].width, max(t.height for t in tiles)
    grid = Image.new("RGB", (columns * width, 2 * height), "white")
    for index, picture in enumerate(tiles):
        grid.paste(picture, ((index % columns) * width, (index // columns) * height))
    with atomic_path(args.out) as tmp:
        grid.save(tmp, format="PNG")
    print(f"wrote {args.out}: top row the {args.each} best, bottom row the {args.each} worst of {len(rows)} held-out images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
