"""The fold models of a cross-validation as one deployable classifier.

Each fold's model was selected and calibrated on its own validation cases; the ensemble's
probability is the mean of the members' calibrated probabilities (descriptor probabilities
likewise), and its operating threshold is chosen for the target sensitivity on the pooled
validation predictions of the folds (each validation case scored by the model that did not
train on it) -- an estimate, since no case was held out from all five members.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from thyronet.data.preprocess import Box
from thyronet.data.records import Polygon
from thyronet.errors import ThyronetError
from thyronet.inference.calibration import Calibration, operating_point
from thyronet.inference.predictor import FrameResult, LoadedModel, PreparedInput, load_checkpoint, read_prediction_rows
from thyronet.io import write_text_atomic
from thyronet.runs.config import RunConfig
from thyronet.runs.layout import CVFolder, RunFolder

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class EnsembleSpec:
    """What ``ensemble.json`` in a CV folder holds."""

    members: list[str]  # checkpoint paths relative to the CV folder
    calibration: dict


def write_ensemble(cv_dir: Path, fold_dirs: list[Path], target_sensitivity: float) -> Path:
    """Choose the ensemble's threshold on the pooled validation predictions; write ensemble.json."""
    labels, probs = [], []
    for fold_dir in fold_dirs:
        for row in read_prediction_rows(RunFolder(fold_dir).predictions("val")):
            labels.append(1 if row["label"] == "malignant" else 0)
            probs.append(float(row["prob_malignant"]))
    calibration = operating_point(np.array(labels), np.array(probs), target_sensitivity)
    spec = EnsembleSpec([str(RunFolder(d).best.relative_to(cv_dir)) for d in fold_dirs], asdict(calibration))
    path = CVFolder(cv_dir).ensemble
    write_text_atomic(path, json.dumps(asdict(spec), indent=1))
    return path


class FoldEnsemble:
    """The members' mean calibrated probability, with the ensemble's own operating threshold."""

    def __init__(self, members: list[LoadedModel], calibration: Calibration, source: Path) -> None:
        if not members:
            raise ThyronetError(f"{source}: an ensemble needs at least one member")
        self.members = members
        self.calibration = calibration
        self.source = source

    @classmethod
    def load(cls, cv_dir: str | Path) -> FoldEnsemble:
        cv_dir = Path(cv_dir)
        try:
            spec = EnsembleSpec(**json.loads((cv_dir / ENSEMBLE_FILE).read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise ThyronetError(f"{cv_dir / ENSEMBLE_FILE}: not a thyronet ensemble ({error})") from None
        return cls([load_checkpoint(cv_dir / m) for m in spec.members], Calibration(**spec.calibration), cv_dir)

    @property
    def config(self) -> RunConfig:
        return self.members[0].config

    def prepare(self, frame: np.ndarray, outlines: Sequence[Polygon] = (), box: Box | None = None) -> PreparedInput:
        """The first member's input (each member finds the nodule with its own segmenter)."""
        return self.members[0].prepare(frame, outlines, box)

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        return self.members[0].to_tensor(image)

    def predict_batch(self, frames: Sequence[np.ndarray], outlines: Sequence[Sequence[Polygon]] | None = None,
                      box: Box | None = None) -> list[FrameResult]:
        """Mean calibrated P(malignant), descriptor probabilities and out-of-distribution score; the
        first member's input. The logits are the log-odds of the mean probability, so that the
        ensemble's calibration (temperature 1, bias 0) gives that probability back."""
        per_member = [member.predict_batch(frames, outlines, box) for member in self.members]
        results = []
        for answers in zip(*per_member, strict=True):
            probability = float(np.mean([a.probability for a in answers]))
            heads = {name: np.mean([a.descriptors[name] for a in answers], axis=0) for name in answers[0].descriptors}
            scores = [a.ood_score for a in answers if a.ood_score is not None]
            clipped = min(max(probability, 1e-7), 1 - 1e-7)
            results.append(FrameResult(probability, heads, answers[0].prepared, float(np.mean(scores)) if scores else None,
                                       np.array([0.0, np.log(clipped / (1 - clipped))], np.float32)))
        return results


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()
