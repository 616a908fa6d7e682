"""Loading a trained checkpoint and running it over records, with the run's own preprocessing."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..clinical.calibration import Calibration, softmax_malignant
from ..data.augment import build_transform
from ..data.dataset import load_prepared
from ..data.records import LABEL_NAMES, ImageRecord
from ..errors import DataError
from ..io import atomic_path, open_atomic
from ..models import create_model
from .config import RunConfig, config_from_dict


def eval_transform(config: RunConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The run's input transform without augmentation: uint8 1xHxW -> normalised CxHxW."""
    data = config.data
    return build_transform(None, data.in_chans, data.mean, data.std)


@dataclass
class LoadedModel:
    """A trained classifier ready for inference: network, run config and calibration."""

    model: nn.Module
    config: RunConfig
    calibration: Calibration
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.config.model.name

    def transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return eval_transform(self.config)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Rebuild the network of a thyronet checkpoint (``best.ckpt``/``last.ckpt``) on the CPU."""
    path = Path(path)
    if path.is_dir():  # a run folder: its best checkpoint
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        # thyronet checkpoints hold the run config (plain Python objects) beside the tensors
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        config = config_from_dict(checkpoint["hyper_parameters"]["config"])
        state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    except Exception as error:  # unpickling, zip and key errors of many kinds
        raise DataError(path, f"not a thyronet checkpoint ({error.__class__.__name__}: {error})") from None
    model = create_model(config.model.name, num_classes=2, in_chans=config.data.in_chans, drop_rate=config.model.drop_rate)
    model.load_state_dict(state)
    model.eval()
    info = checkpoint.get("thyronet", {})
    calibration = Calibration(**info.get("calibration", {}))
    return LoadedModel(model, config, calibration, info, path)


def save_calibration(path: Path, calibration: Calibration, extra: dict[str, Any]) -> None:
    """Store the calibration (and provenance) inside a checkpoint, atomically."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["thyronet"] = {"version": __version__, "calibration": calibration.to_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


@torch.inference_mode()
def predict_logits(loaded: LoadedModel, records: Sequence[ImageRecord], batch_size: int = 32) -> np.ndarray:
    """(N, 2) logits for the records, preprocessed exactly as in training (no augmentation)."""
    transform = loaded.transform()
    preprocess = loaded.config.data.preprocess
    outputs = []
    for start in range(0, len(records), batch_size):
        batch = [
            transform(torch.from_numpy(load_prepared(r, preprocess)[0]).unsqueeze(0))
            for r in records[start : start + batch_size]
        ]
        outputs.append(loaded.model(torch.stack(batch)).float().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)


@dataclass
class Predictions:
    """Per-image outputs over a set of records."""

    records: list[ImageRecord]
    logits: np.ndarray
    calibration: Calibration

    @property
    def probs(self) -> np.ndarray:
        return softmax_malignant(self.logits, self.calibration.temperature)

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if r.label is None else r.label for r in self.records])

    @property
    def case_ids(self) -> list[str]:
        return [r.case_id for r in self.records]

    def write_csv(self, path: Path) -> None:
        probs = self.probs
        with open_atomic(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "case", "label", "prob_malignant", "decision", "threshold", "logit_benign", "logit_malignant"])
            for record, logit, prob in zip(self.records, self.logits, probs, strict=False):
                decision = "malignant" if prob >= self.calibration.threshold else "benign"
                writer.writerow([
                    record.key, record.case_id, LABEL_NAMES.get(record.label, ""), f"{prob:.4f}", decision,
                    f"{self.calibration.threshold:.4f}", f"{logit[0]:.4f}", f"{logit[1]:.4f}",
                ])


def predict_records(loaded: LoadedModel, records: Sequence[ImageRecord]) -> Predictions:
    return Predictions(list(records), predict_logits(loaded, records), loaded.calibration)
