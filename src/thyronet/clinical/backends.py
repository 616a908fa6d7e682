"""One interface over a trained model: a PyTorch checkpoint or its ONNX export.

Both carry the run's preprocessing and the calibration fitted on validation, so every input
is prepared and judged the same way whichever runtime answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.preprocess import Box
from ..data.records import Polygon
from ..engine.calibration import Calibration, softmax_malignant
from ..engine.config import RunConfig, config_from_dict
from ..engine.ensemble import FoldEnsemble, is_ensemble
from ..engine.inference import (
    FrameResult,
    LoadedModel,
    Outputs,
    PreparedInput,
    eval_transform,
    frame_result,
    load_checkpoint,
    prepare_input,
)
from ..errors import ThyronetError
from .export import OnnxClassifier


@dataclass
class Backend:
    """A classifier plus what it needs around it: preprocessing, calibration, provenance."""

    config: RunConfig
    calibration: Calibration
    source: Path
    runtime: str
    info: dict[str, Any] = field(default_factory=dict)
    loaded: LoadedModel | None = None  # the torch model (None for ONNX; an ensemble's first member)
    onnx: OnnxClassifier | None = None
    ensemble: FoldEnsemble | None = None  # the fold models of a CV folder, averaged

    @property
    def name(self) -> str:
        return self.config.model.name

    def prepare(self, image: np.ndarray, box: Box | None = None, outlines: Sequence[Polygon] = ()) -> PreparedInput:
        """HxW uint8 frame -> the model's input, cut around the nodule when the run looks at a
        region of interest (``box`` given by the user; else the expert ``outlines`` for runs that
        use them; else the segmenter's)."""
        return prepare_input(self.config, self.loaded.segmenter if self.loaded else None, image, outlines, box)

    @cached_property
    def _transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return eval_transform(self.config)

    def to_tensor(self, prepared: np.ndarray) -> torch.Tensor:
        """A preprocessed uint8 image -> normalised model input 1xCxHxW."""
        return self._transform(torch.from_numpy(prepared).unsqueeze(0)).unsqueeze(0)

    def outputs(self, batch: torch.Tensor) -> Outputs:
        """Malignancy logits, descriptor probabilities and features (checkpoints; ONNX: logits)."""
        if self.onnx is not None:
            return Outputs(self.onnx(batch.numpy()), {}, None)
        return self.loaded.outputs(batch)

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return softmax_malignant(logits, self.calibration.temperature)

    def predict_frame(self, frame: np.ndarray, box: Box | None = None) -> FrameResult:
        """Calibrated P(malignant), descriptor probabilities, the input the model saw and its
        out-of-distribution score."""
        if self.ensemble is not None:
            return self.ensemble.predict_frame(frame, box)
        prepared = self.prepare(frame, box)
        if self.loaded is not None:
            return frame_result(self.loaded, prepared)
        logits = self.onnx(self.to_tensor(prepared.image).numpy())
        return FrameResult(float(self.probability(logits)[0]), {}, prepared)

    def metadata(self) -> dict[str, str]:
        """What an ONNX export carries so that it predicts exactly like this checkpoint."""
        return {
            "thyronet.config": json.dumps(self.config.to_dict()),
            "thyronet.calibration": json.dumps(self.calibration.to_dict()),
            "thyronet.info": json.dumps({k: v for k, v in self.info.items() if k != "calibration"}),
        }


def load_backend(path: str | Path, threads: int | None = None) -> Backend:
    """A checkpoint (``.ckpt`` or run folder), a CV folder (its fold ensemble) or an ONNX file
    exported by thyronet (run on ``threads`` intra-op threads, onnxruntime's default when None)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ThyronetError(f"{path}: ONNX file not found")
        session = OnnxClassifier(path, threads)
        try:
            config = config_from_dict(json.loads(session.metadata["thyronet.config"]))
            calibration = Calibration(**json.loads(session.metadata["thyronet.calibration"]))
            info = json.loads(session.metadata.get("thyronet.info", "{}"))
        except (KeyError, ValueError, TypeError) as error:
            raise ThyronetError(f"{path}: not exported by `thyronet export` (missing {error})") from None
        if config.data.roi.mode != "none":
            raise ThyronetError(f"{path}: a region-of-interest model; its ONNX export has no segmenter, use the checkpoint")
        return Backend(config, calibration, path, "onnxruntime", info, onnx=session)
    if is_ensemble(path):
        ensemble = FoldEnsemble.load(path)
        first = ensemble.members[0]
        info = {**first.info, "ensemble_members": len(ensemble.members)}
        return Backend(first.config, ensemble.calibration, path, f"torch, ensemble of {len(ensemble.members)}", info,
                       loaded=first, ensemble=ensemble)
    loaded = load_checkpoint(path)
    return Backend(loaded.config, loaded.calibration, loaded.path, "torch", loaded.info, loaded=loaded)
