"""One interface over a trained model: a PyTorch checkpoint or its ONNX export.

Both carry the run's preprocessing and the calibration fitted on validation, so every input
is prepared and judged the same way whichever runtime answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.preprocess import preprocess
from ..engine.config import RunConfig, config_from_dict
from ..engine.inference import LoadedModel, eval_transform, load_checkpoint
from ..errors import ThyronetError
from .calibration import Calibration, softmax_malignant
from .export import OnnxClassifier


@dataclass
class Backend:
    """A classifier plus what it needs around it: preprocessing, calibration, provenance."""

    config: RunConfig
    calibration: Calibration
    source: Path
    runtime: str
    info: dict[str, Any] = field(default_factory=dict)
    loaded: LoadedModel | None = None  # the torch model (None for ONNX)
    onnx: OnnxClassifier | None = None

    @property
    def name(self) -> str:
        return self.config.model.name

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """HxW uint8 frame -> (preprocessed uint8 image, model input 1xCxHxW)."""
        prepared, _ = preprocess(image, self.config.data.preprocess)
        return prepared, self.to_tensor(prepared)

    @cached_property
    def _transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return eval_transform(self.config)

    def to_tensor(self, prepared: np.ndarray) -> torch.Tensor:
        """A preprocessed uint8 image -> normalised model input 1xCxHxW."""
        return self._transform(torch.from_numpy(prepared).unsqueeze(0)).unsqueeze(0)

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx(batch.numpy())
        with torch.inference_mode():
            return self.loaded.model(batch).float().numpy()

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return softmax_malignant(logits, self.calibration.temperature)

    def metadata(self) -> dict[str, str]:
        """What an ONNX export carries so that it predicts exactly like this checkpoint."""
        return {
            "thyronet.config": json.dumps(self.config.to_dict()),
            "thyronet.calibration": json.dumps(self.calibration.to_dict()),
            "thyronet.info": json.dumps({k: v for k, v in self.info.items() if k != "calibration"}),
        }


def load_backend(path: str | Path) -> Backend:
    """A checkpoint (``.ckpt`` or run folder) or an ONNX file exported by thyronet."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ThyronetError(f"{path}: ONNX file not found")
        session = OnnxClassifier(path)
        try:
            config = config_from_dict(json.loads(session.metadata["thyronet.config"]))
            calibration = Calibration(**json.loads(session.metadata["thyronet.calibration"]))
            info = json.loads(session.metadata.get("thyronet.info", "{}"))
        except (KeyError, ValueError, TypeError) as error:
            raise ThyronetError(f"{path}: not exported by `thyronet export` (missing {error})") from None
        return Backend(config, calibration, path, "onnxruntime", info, onnx=session)
    loaded = load_checkpoint(path)
    return Backend(loaded.config, loaded.calibration, loaded.path, "torch", loaded.info, loaded=loaded)
