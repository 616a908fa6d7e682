"""Does the heat sit on the nodule? CAM mass inside the expert outline, and the pointing game."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thyronet.data.imageio import read_image
from thyronet.data.preprocess import preprocess
from thyronet.data.records import Collection, ImageRecord
from thyronet.data.splits import SplitPlan
from thyronet.inference.backends import Backend, load_backend
from thyronet.inference.cam import CamExplainer
from thyronet.runs.layout import RunFolder


def cam_mass_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass that lies inside the outline (0..1; NaN for an empty map)."""
    total = float(heat.sum())
    return float(heat[mask > 0].sum()) / total if total > 0 else float("nan")


def pointing_hit(heat: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's maximum falls inside the outline."""
    return bool(mask.flat[int(np.argmax(heat))] > 0)


@dataclass
class LocalisationSummary:
    images: int
    mass_inside_mean: float
    mass_inside_std: float
    pointing_hit_rate: float
    outline_area_share: float  # what a uniform map would score on mass inside: the chance level

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> LocalisationSummary:
        masses, hits, areas = [], [], []
        for heat, mask in pairs:
            masses.append(cam_mass_inside(heat, mask))
            hits.append(pointing_hit(heat, mask))
            areas.append(float((mask > 0).mean()))
        masses_array = np.asarray(masses, float)
        return cls(len(masses), float(np.nanmean(masses_array)), float(np.nanstd(masses_array)),
                   float(np.mean(hits)), float(np.mean(areas)))


def held_out_outlined(backend: Backend, records: Sequence[ImageRecord], all_images: bool = False) -> list[ImageRecord]:
    """The outlined records to score a model on: its run's unseen test cases where the run folder
    says which (``all_images`` or a checkpoint outside a run folder: every outlined record)."""
    outlined = [r for r in records if r.outlines]
    split_file = RunFolder.of_checkpoint(backend.source).split
    if all_images or not split_file.is_file():
        return outlined
    test_cases = set(SplitPlan.load(split_file).splits[0].test)
    return [r for r in outlined if r.case_id in test_cases]


def localisation_summary(backend: Backend, records: Sequence[ImageRecord], method: str = "gradcam",
                         layer: str | None = None) -> LocalisationSummary:
    """How much of the model's CAM (at ``layer``, else the registry's) falls inside each record's
    expert outline, taken in the same crop the model saw (its predicted region, or the scan area)."""
    explainer = CamExplainer(backend, method, layer)
    pairs = []
    for record in records:
        frame = read_image(record.path, record.frame)
        prepared = backend.prepare(frame, outlines=record.outlines)
        region = None if prepared.region.startswith("scan area") else prepared.geometry.crop
        _, mask = preprocess(frame, backend.config.data.preprocess, record.outlines, region)
        pairs.append((explainer(backend.to_tensor(prepared.image)), mask))
    return LocalisationSummary.from_pairs(pairs)


def localise_models(checkpoints: Sequence[str | Path], collection: Collection, method: str = "gradcam",
                    layer: str | None = None, all_images: bool = False) -> list[dict[str, Any]]:
    """One row per model: Grad-CAM mass inside the expert outline and the pointing game, on its run's
    held-out outlined images (or ``all_images``)."""
    rows = []
    for checkpoint in checkpoints:
        backend = load_backend(checkpoint)
        summary = localisation_summary(backend, held_out_outlined(backend, collection.images, all_images), method, layer)
        rows.append({"model": backend.name, "checkpoint": str(backend.source), "method": method,
                     "layer": layer or "registry", **summary.__dict__})
    return rows
