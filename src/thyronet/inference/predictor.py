"""Loading a trained checkpoint and running it over records, with the run's own preprocessing
and region of interest.

:class:`Predictor` is the one interface everything scores through (predict, serve, evaluate, the
engine's own validation and test, cv and compare read what it wrote): a checkpoint
(:class:`LoadedModel`), the fold models of a cross-validation (``inference.ensemble.FoldEnsemble``)
or an ONNX export (``inference.backends.OnnxModel``)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

from thyronet.data.augment import build_transform
from thyronet.data.imageio import read_image
from thyronet.data.preprocess import Box, Geometry, preprocess_with_geometry
from thyronet.data.records import LABEL_NAMES, ImageRecord, Polygon
from thyronet.data.region import crop_region, expert_box
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES
from thyronet.errors import DataError
from thyronet.inference.calibration import Calibration
from thyronet.inference.checkpoint import load_network
from thyronet.inference.ood import FeatureGate
from thyronet.io import open_atomic
from thyronet.runs.config import RunConfig

if TYPE_CHECKING:
    from thyronet.inference.segmenter import Segmenter


def eval_transform(config: RunConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The run's input transform without augmentation: uint8 1xHxW -> normalised CxHxW."""
    data = config.data
    return build_transform(None, data.in_chans, data.mean, data.std)


class Outputs(NamedTuple):
    logits: np.ndarray  # (N, 2)
    descriptors: dict[str, np.ndarray]  # name -> (N, classes) probabilities; empty without heads
    features: np.ndarray | None  # (N, d) every stage's pooled features; None for models other than ResNets


@dataclass
class PreparedInput:
    """A frame made ready for the classifier, and where in the frame the classifier looked."""

    image: np.ndarray  # size x size uint8, what the network sees
    geometry: Geometry  # maps the input back onto the frame
    region: str  # where the crop came from: "scan area", "expert", "predicted", "box"
    nodule_box: Box | None = None  # the nodule's box in frame pixels, before the context margin
    nodule_mask: np.ndarray | None = None  # the predicted nodule mask at frame size, when segmented


def prepare_input(
    config: RunConfig, segmenter: Segmenter | None, frame: np.ndarray, outlines: Sequence[Polygon] = (),
    box: Box | None = None,
) -> PreparedInput:
    """Cut the classifier's input from a frame as its run was trained to see it.

    With a region of interest, the nodule's box is, in order: ``box`` (given by the user), the
    expert outline (runs whose mode is ``expert``, when the record has one), the segmenter's
    prediction; without any, the scan area (the region says so).
    """
    roi = config.data.roi
    nodule_box, source, mask = None, "scan area", None
    if roi.mode != "none":
        if box is not None:
            nodule_box, source = box, "box"
        elif roi.mode == "expert" and outlines:
            nodule_box, source = expert_box(frame.shape, outlines), "expert"
        elif segmenter is not None:
            found = segmenter(frame)
            mask = found.mask
            if found.found:
                nodule_box, source = found.box, "predicted"
            else:
                source = "scan area (no nodule found)"
    crop = crop_region(nodule_box, frame.shape, roi)
    image, _, geometry = preprocess_with_geometry(frame, config.data.preprocess, region=crop)
    return PreparedInput(image, geometry, source, nodule_box, mask)


@dataclass
class FrameResult:
    """One frame's answer: calibrated P(malignant), descriptor class probabilities, the input the
    model saw, how unlike its training images the input is (None without a gate), and the raw
    logits (benign, malignant) before calibration."""

    probability: float
    descriptors: dict[str, np.ndarray]
    prepared: PreparedInput
    ood_score: float | None = None
    logits: np.ndarray | None = None
    features: np.ndarray | None = None  # pooled features (the gate's input), for ResNet-family checkpoints


class ModelInput:
    """Frames made ready for a network exactly as its run's evaluation made them; the predictors
    share it (``config`` and ``segmenter`` are theirs)."""

    config: RunConfig
    segmenter: Segmenter | None = None

    @cached_property
    def _transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return eval_transform(self.config)  # built once, not per image: a v2.Compose is not free

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """A prepared uint8 image -> normalised model input 1xCxHxW."""
        return self._transform(torch.from_numpy(image).unsqueeze(0)).unsqueeze(0)

    def prepare(self, frame: np.ndarray, outlines: Sequence[Polygon] = (), box: Box | None = None) -> PreparedInput:
        return prepare_input(self.config, self.segmenter, frame, outlines, box)

    def prepare_batch(self, frames: Sequence[np.ndarray], outlines: Sequence[Sequence[Polygon]] | None,
                      box: Box | None) -> tuple[list[PreparedInput], torch.Tensor]:
        prepared = [self.prepare(frame, lines, box) for frame, lines in zip(frames, outlines or [()] * len(frames), strict=True)]
        return prepared, torch.cat([self.to_tensor(p.image) for p in prepared])


class Predictor(Protocol):
    """What scores frames: ``predict_batch`` prepares each frame as the run was trained to see it
    (around ``box``, else the expert ``outlines`` for expert-region runs, else the segmenter's
    nodule) and answers with calibrated probabilities; ``calibration.decide`` turns one into a decision."""

    config: RunConfig
    calibration: Calibration

    def prepare(self, frame: np.ndarray, outlines: Sequence[Polygon] = (), box: Box | None = None) -> PreparedInput: ...

    def to_tensor(self, image: np.ndarray) -> torch.Tensor: ...

    def predict_batch(self, frames: Sequence[np.ndarray], outlines: Sequence[Sequence[Polygon]] | None = None,
                      box: Box | None = None) -> list[FrameResult]: ...


@dataclass
class LoadedModel(ModelInput):
    """A trained classifier ready for inference: network, run config and calibration."""

    model: nn.Module
    config: RunConfig
    calibration: Calibration
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    segmenter: Segmenter | None = None  # finds the nodule when the region of interest is predicted
    gate: FeatureGate | None = None  # flags inputs unlike the training images

    @property
    def name(self) -> str:
        return self.config.model.name

    def predict_batch(self, frames: Sequence[np.ndarray], outlines: Sequence[Sequence[Polygon]] | None = None,
                      box: Box | None = None) -> list[FrameResult]:
        prepared, batch = self.prepare_batch(frames, outlines, box)
        out = self.outputs(batch)
        probs = self.calibration.probabilities(out.logits)
        scores = self.ood_score(out.features)
        return [
            FrameResult(float(probs[i]), {name: p[i] for name, p in out.descriptors.items()}, prepared[i],
                        None if scores is None else float(scores[i]), out.logits[i],
                        None if out.features is None else out.features[i])
            for i in range(len(prepared))
        ]

    @torch.inference_mode()
    def outputs(self, batch: torch.Tensor) -> Outputs:
        """Malignancy logits (N, 2), descriptor class probabilities (with descriptor heads) and the
        pooled features of every stage (ResNet-family models). With ``inference.tta: hflip`` the
        logits and descriptor probabilities are averaged with the mirror image's; the features
        (for the out-of-distribution gate, fitted on plain images) stay the plain image's."""
        plain = self._forward(batch)
        if self.config.inference.tta == "none":
            return plain
        mirrored = self._forward(torch.flip(batch, dims=[-1]))
        heads = {name: (probs + mirrored.descriptors[name]) / 2 for name, probs in plain.descriptors.items()}
        return Outputs((plain.logits + mirrored.logits) / 2, heads, plain.features)

    def _forward(self, batch: torch.Tensor) -> Outputs:
        model = self.model
        batch = batch.to(next(model.parameters()).device)  # where the network was put (a GPU in archive prediction)
        if not hasattr(model, "forward_stages"):  # the peers: logits only
            return Outputs(model(batch).float().cpu().numpy(), {}, None)
        maps = model.forward_stages(batch)
        features = model.pool_features(maps)
        logits = model.fc(model.dropout(features)).float().cpu().numpy()
        heads = {name: torch.softmax(head(features).float(), 1).cpu().numpy() for name, head in model.descriptor_heads.items()}
        # every stage's pooled map: early stages see texture statistics (noise, other scanners)
        # that the last stage's features abstract away
        gate_features = torch.cat([torch.flatten(model.avgpool(m), 1) for m in maps], 1)
        return Outputs(logits, heads, gate_features.float().cpu().numpy())

    def ood_score(self, features: np.ndarray | None) -> np.ndarray | None:
        """Out-of-distribution scores (above 1: unlike the training images), where the run has a gate."""
        return None if self.gate is None or features is None else self.gate.score(features)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Rebuild the benign-vs-malignant classifier of a thyronet checkpoint (``best.ckpt``/``last.ckpt``)
    on the CPU, with the segmenter it carries when its region of interest is predicted."""
    from thyronet.inference.segmenter import Segmenter

    model, config, info, path = load_network(path)
    if config.multiclass:
        raise DataError(path, f"is a {len(config.class_names)}-class classifier ({', '.join(config.class_names)}); "
                              "predict, serve, evaluate, explain and export take benign-vs-malignant classifiers "
                              "(its run's results.json holds its figures)")
    calibration = Calibration(**info.get("calibration", {}))
    segmenter = Segmenter.from_state(info["segmenter"]) if "segmenter" in info else None
    gate = FeatureGate(**info["ood"]) if "ood" in info else None
    return LoadedModel(model, config, calibration, info, path, segmenter, gate)


@dataclass
class Predictions:
    """Per-image outputs over a set of records."""

    records: list[ImageRecord]
    logits: np.ndarray
    calibration: Calibration
    descriptors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, classes) probabilities
    regions: list[str] = field(default_factory=list)  # where each input's crop came from
    features: np.ndarray | None = None  # (N, d) pooled features, where the model has them
    ood_scores: np.ndarray | None = None  # above 1: unlike the training images

    @property
    def probs(self) -> np.ndarray:
        return self.calibration.probabilities(self.logits)

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if r.label is None else r.label for r in self.records])

    @property
    def case_ids(self) -> list[str]:
        return [r.case_id for r in self.records]

    def descriptor_values(self, index: int) -> dict[str, tuple[str, float]]:
        """Most probable class and its probability, per descriptor head, for one record."""
        return {name: (DESCRIPTOR_CLASSES[name][int(p[index].argmax())], float(p[index].max()))
                for name, p in self.descriptors.items()}

    def write_csv(self, path: Path) -> None:
        probs = self.probs
        heads = list(self.descriptors)
        with open_atomic(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "case", "label", "prob_malignant", "decision", "threshold", "logit_benign",
                             "logit_malignant", "region", *[c for h in heads for c in (h, f"{h}_prob")]])
            for index, (record, logit, prob) in enumerate(zip(self.records, self.logits, probs, strict=True)):
                decision = self.calibration.decide(prob)
                values = self.descriptor_values(index)
                writer.writerow([
                    record.key, record.case_id, LABEL_NAMES.get(record.label, ""), f"{prob:.4f}", decision,
                    f"{self.calibration.threshold:.4f}", f"{logit[0]:.4f}", f"{logit[1]:.4f}",
                    self.regions[index] if self.regions else "",
                    *[c for h in heads for c in (values[h][0], f"{values[h][1]:.4f}")],
                ])


def read_prediction_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a per-image CSV of a run folder (``predictions_*.csv`` that
    :meth:`Predictions.write_csv` wrote, or a segmenter's ``segments_*.csv``)."""
    if not path.is_file():
        raise DataError(path, "predictions not found (is the run finished?)")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def predict_records(predictor: Predictor, records: Sequence[ImageRecord], batch_size: int = 32,
                    alter: Callable[[np.ndarray, int], np.ndarray] | None = None) -> Predictions:
    """Outputs for the records, each prepared exactly as in evaluation (no augmentation).

    ``alter(frame, position)``, where given, changes each frame as read before anything else sees
    it (a simulated change of scanner in ``benchmarks/shift_robustness.py``); ``position`` is the
    record's place in ``records``, to seed what it draws."""
    results: list[FrameResult] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        frames = [read_image(r.path, r.frame) for r in chunk]
        if alter is not None:
            frames = [alter(frame, start + i) for i, frame in enumerate(frames)]
        results += predictor.predict_batch(frames, [r.outlines for r in chunk])
    if not results:
        return Predictions([], np.zeros((0, 2), np.float32), predictor.calibration)
    heads = {name: np.stack([r.descriptors[name] for r in results]) for name in results[0].descriptors}
    features = None if results[0].features is None else np.stack([r.features for r in results])
    scores = None if results[0].ood_score is None else np.array([r.ood_score for r in results])
    return Predictions(list(records), np.stack([r.logits for r in results]), predictor.calibration, heads,
                       [r.prepared.region for r in results], features, scores)
