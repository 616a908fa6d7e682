"""Finding the nodule in a frame with a trained segmentation model.

The segmenter sees the frame as in training (scan area, letterboxed); its probability map is
carried back onto the frame's own pixel grid (:class:`~thyronet.data.preprocess.Geometry`), so
masks, boxes and areas are in the input's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from thyronet.data.augment import photometric_transform
from thyronet.data.preprocess import Box, largest_component, mask_box, preprocess_with_geometry
from thyronet.errors import ThyronetError
from thyronet.models import create_model
from thyronet.runs.config import RunConfig, config_from_dict
from thyronet.runs.layout import CVFolder

# Predicted regions smaller than this share of the largest one are specks, not a second view.
MIN_SHARE_OF_LARGEST = 0.25
# Less than this share of the frame is no nodule (DDTI's smallest outline covers about 0.5%).
MIN_AREA_SHARE = 0.001


@dataclass
class Segmentation:
    """One frame's nodule: a 0/255 mask at the frame's size and the box of its largest region."""

    mask: np.ndarray
    box: Box | None  # x0, y0, x1, y1 (exclusive) in frame pixels; None when no nodule was found
    confidence: float  # mean nodule probability inside the mask (0 when none)

    @property
    def found(self) -> bool:
        return self.box is not None

    @property
    def area(self) -> int:
        return int((self.mask > 0).sum())


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the regions at least MIN_SHARE_OF_LARGEST of the largest one; drop it all if tiny."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.max() < MIN_AREA_SHARE * mask.size:
        return np.zeros_like(mask)
    keep = 1 + np.flatnonzero(areas >= MIN_SHARE_OF_LARGEST * areas.max())
    return np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)


class Network(Protocol):
    """What the segmenter runs: a torch network, or an ONNX export called like one."""

    def eval(self) -> Any: ...

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


class Segmenter:
    """A trained segmentation network with the preprocessing of its run."""

    def __init__(self, model: nn.Module | Network, config: RunConfig, source: str = "") -> None:
        self.model = model.eval()
        self.config = config
        self.source = source
        data = config.data
        self.transform = photometric_transform(None, data.in_chans, data.mean, data.std)

    @classmethod
    def load(cls, path: str | Path) -> Segmenter:
        """A segmentation checkpoint file or run folder, or a classifier checkpoint that carries
        its segmenter (a predicted region of interest)."""
        from thyronet.inference.checkpoint import read_checkpoint

        config, state, info, path = read_checkpoint(path)
        if config.task == "classify" and "segmenter" in info:
            return cls.from_state(info["segmenter"])
        if config.task != "segment":
            raise ThyronetError(f"{path}: a classifier without a segmenter, not a segmentation model")
        model = create_model(config.model.name, num_classes=1, in_chans=config.data.in_chans)
        model.load_state_dict(state)
        return cls(model, config, str(path))

    def state(self) -> dict[str, Any]:
        """What a classifier checkpoint embeds to find the nodule without this file."""
        if not isinstance(self.model, nn.Module):
            raise ThyronetError(f"{self.source}: an exported segmenter cannot be embedded in a checkpoint; use its run folder")
        return {"config": self.config.to_dict(), "state_dict": self.model.state_dict(), "source": self.source}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Segmenter:
        config = config_from_dict(state["config"])
        model = create_model(config.model.name, num_classes=1, in_chans=config.data.in_chans)
        model.load_state_dict(state["state_dict"])
        return cls(model, config, state.get("source", ""))

    @torch.inference_mode()
    def probabilities(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Nodule probability per frame pixel, for each frame."""
        prepared = [preprocess_with_geometry(frame, self.config.data.preprocess) for frame in frames]
        batch = torch.stack([self.transform(torch.from_numpy(image).unsqueeze(0)) for image, _, _ in prepared])
        if isinstance(self.model, torch.nn.Module):  # an exported segmenter (onnxruntime) takes CPU tensors
            batch = batch.to(next(self.model.parameters()).device)
        maps = torch.sigmoid(self.model(batch).float())[:, 0].cpu().numpy()
        return [geometry.to_frame(prob) for prob, (_, _, geometry) in zip(maps, prepared, strict=True)]

    def __call__(self, frame: np.ndarray) -> Segmentation:
        return self.segment([frame])[0]

    def segment(self, frames: Sequence[np.ndarray], batch_size: int = 16) -> list[Segmentation]:
        results = []
        for start in range(0, len(frames), batch_size):
            for prob in self.probabilities(frames[start : start + batch_size]):
                mask = clean_mask(np.where(prob >= 0.5, 255, 0).astype(np.uint8))
                box = mask_box(largest_component(mask)) if mask.any() else None
                confidence = float(prob[mask > 0].mean()) if mask.any() else 0.0
                results.append(Segmentation(mask, box, confidence))
        return results


def fold_segmenter(path: str | Path, fold: int | None) -> Path:
    """A segmenter named by a CV folder resolves to that fold's best checkpoint (so that no
    held-out image of the fold was seen by the segmenter); files and run folders stay as given."""
    path = Path(path)
    if CVFolder(path).is_cv():
        if fold is None:
            raise ThyronetError(f"{path}: a CV folder of segmenters; name one fold's run folder instead")
        return CVFolder(path).fold(fold).best
    return path
