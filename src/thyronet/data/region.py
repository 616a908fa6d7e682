"""Region of interest: where in the frame a classifier looks.

``none`` is the whole scan area. Otherwise the classifier sees a crop around the nodule's box,
grown by a context margin: in training the box comes from the expert outline and is jittered in
position and size every time an image is drawn (so the model tolerates an imperfect box); at
inference it comes from the expert outline (``expert``), from a segmentation model
(``predicted``) or from the user (``thyronet predict --box``). Where there is no box, the crop
falls back to the scan area.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from thyronet.data.preprocess import Box, grow_box, jitter_box, largest_component, mask_box, outline_mask
from thyronet.data.records import Polygon

RegionMode = Literal["none", "expert", "predicted"]


@dataclass(frozen=True)
class RegionConfig:
    """``mode``: which box validation, test and prediction use (training always uses the expert
    outline when the mode is not ``none``); ``margin``: context added on each side, as a fraction
    of the box's size; ``jitter``: training-time perturbation of the box (fraction of its size);
    ``segmenter``: a segmentation checkpoint, run folder or CV folder, for ``predicted``; when
    unset, a segmenter is trained first in the run's ``segmenter/`` folder with the config
    ``segmenter_config`` (a shipped name or a YAML file), on the same split."""

    mode: RegionMode = "none"
    margin: float = 0.3
    jitter: float = 0.15
    segmenter: str | None = None
    segmenter_config: str = "segment"


def expert_box(shape: tuple[int, int], outlines: Sequence[Polygon]) -> Box | None:
    """The box of the largest outlined region (one view of a dual-view frame), or None."""
    mask = outline_mask(shape, outlines)
    return None if mask is None else mask_box(largest_component(mask))


def crop_region(
    box: Box | None, shape: tuple[int, int], config: RegionConfig, rng: np.random.Generator | None = None
) -> Box | None:
    """The crop for a nodule box: jittered when ``rng`` is given, then grown by the margin;
    None (the scan area) when there is no box."""
    if box is None:
        return None
    if rng is not None and config.jitter > 0:
        box = jitter_box(box, shape, config.jitter, rng)
    return grow_box(box, shape, config.margin)


def parse_box(text: str) -> Box:
    """'x0,y0,x1,y1' in frame pixels -> a box; raises ValueError with a plain reason."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise ValueError(f"box {text!r}: expected four numbers x0,y0,x1,y1") from None
    if x1 <= x0 or y1 <= y0 or min(x0, y0) < 0:
        raise ValueError(f"box {text!r}: needs 0 <= x0 < x1 and 0 <= y0 < y1")
    return (x0, y0, x1, y1)
