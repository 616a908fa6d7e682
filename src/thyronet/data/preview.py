"""A PNG grid of preprocessed samples with the expert outline drawn, to see what the model sees."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from thyronet.data.imageio import read_image
from thyronet.data.preprocess import PreprocessConfig, preprocess
from thyronet.data.records import LABEL_NAMES, ImageRecord
from thyronet.data.region import RegionConfig, crop_region, expert_box
from thyronet.io import atomic_path

OUTLINE_COLOUR = (255, 200, 0)


def render_tile(image: np.ndarray, mask: np.ndarray | None, caption: str) -> Image.Image:
    """One preprocessed image in colour with its outline contour and a caption strip."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if mask is not None:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, OUTLINE_COLOUR, 1)
    tile = Image.new("RGB", (rgb.shape[1], rgb.shape[0] + 14), "black")
    tile.paste(Image.fromarray(rgb), (0, 14))
    ImageDraw.Draw(tile).text((2, 1), caption, fill="white")
    return tile


def write_preview(
    records: Sequence[ImageRecord], config: PreprocessConfig, region: RegionConfig, out: Path, count: int = 16, seed: int = 0
) -> Path:
    """Sample ``count`` records and write a grid PNG to ``out`` of what the model sees: the scan
    area, or (with a region of interest) the crop around the expert outline, unjittered."""
    chosen = random.Random(seed).sample(list(records), min(count, len(records)))
    tiles = []
    for record in chosen:
        frame = read_image(record.path, record.frame)
        crop = crop_region(expert_box(frame.shape, record.outlines), frame.shape, region) if region.mode != "none" else None
        image, mask = preprocess(frame, config, record.outlines, crop)
        label = LABEL_NAMES.get(record.label, "unlabelled")
        tiles.append(render_tile(image, mask, f"{record.key} {label}"))
    columns = min(4, len(tiles))
    rows = -(-len(tiles) // columns)
    width, height = tiles[0].size
    grid = Image.new("RGB", (columns * width, rows * height), "black")
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * width, (i // columns) * height))
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")
    return out
