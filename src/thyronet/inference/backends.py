"""One interface over a trained model: a PyTorch checkpoint, the fold models of a
cross-validation, or an ONNX export.

Each is a :class:`~thyronet.inference.predictor.Predictor` carrying the run's preprocessing and the
calibration fitted on validation, so every input is prepared and judged the same way whichever
runtime answers; :class:`Backend` adds what the clinical tools show about it (its source, runtime
and provenance, and the torch network for Grad-CAM where there is one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thyronet.data.preprocess import Box
from thyronet.data.records import Polygon
from thyronet.errors import ThyronetError
from thyronet.inference.calibration import Calibration
from thyronet.inference.ensemble import FoldEnsemble, is_ensemble
from thyronet.inference.onnx import OnnxGraph, OnnxNetwork, export_onnx
from thyronet.inference.predictor import FrameResult, LoadedModel, ModelInput, Predictor, PreparedInput, load_checkpoint
from thyronet.inference.segmenter import Segmenter
from thyronet.runs.config import RunConfig, config_from_dict

# keys of an ONNX export's metadata
CONFIG_METADATA, SEGMENTER_METADATA = "thyronet.config", "thyronet.segmenter"


@dataclass
class OnnxModel(ModelInput):
    """A classifier exported by ``thyronet export --onnx``, run by onnxruntime: logits only (no
    descriptor heads, no out-of-distribution gate), and the exported segmenter that finds its
    region of interest where the run predicts one."""

    config: RunConfig
    calibration: Calibration
    session: OnnxGraph
    segmenter: Segmenter | None = None

    def predict_batch(self, frames: Sequence[np.ndarray], outlines: Sequence[Sequence[Polygon]] | None = None,
                      box: Box | None = None) -> list[FrameResult]:
        prepared, batch = self.prepare_batch(frames, outlines, box)
        logits = self.session(batch.numpy())
        probs = self.calibration.probabilities(logits)
        return [FrameResult(float(probs[i]), {}, prepared[i], None, logits[i]) for i in range(len(prepared))]


@dataclass
class Backend:
    """A predictor plus what the clinical tools say about it: where it came from, which runtime
    answers, its provenance."""

    predictor: Predictor
    source: Path
    runtime: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig:
        return self.predictor.config

    @property
    def calibration(self) -> Calibration:
        return self.predictor.calibration

    @property
    def name(self) -> str:
        return self.config.model.name

    @property
    def loaded(self) -> LoadedModel | None:
        """The torch network behind the answers, for Grad-CAM and export (an ensemble's first
        member); None for ONNX."""
        if isinstance(self.predictor, FoldEnsemble):
            return self.predictor.members[0]
        return self.predictor if isinstance(self.predictor, LoadedModel) else None

    @property
    def is_ensemble(self) -> bool:
        return isinstance(self.predictor, FoldEnsemble)

    def prepare(self, image: np.ndarray, box: Box | None = None, outlines: Sequence[Polygon] = ()) -> PreparedInput:
        """HxW uint8 frame -> the model's input, cut around the nodule when the run looks at a
        region of interest (``box`` given by the user; else the expert ``outlines`` for runs that
        use them; else the segmenter's)."""
        return self.predictor.prepare(image, outlines, box)

    def to_tensor(self, prepared: np.ndarray) -> torch.Tensor:
        """A preprocessed uint8 image -> normalised model input 1xCxHxW."""
        return self.predictor.to_tensor(prepared)

    def predict_frame(self, frame: np.ndarray, box: Box | None = None) -> FrameResult:
        """Calibrated P(malignant), descriptor probabilities, the input the model saw and its
        out-of-distribution score."""
        return self.predictor.predict_batch([frame], None, box)[0]

    def metadata(self) -> dict[str, str]:
        """What an ONNX export carries so that it predicts exactly like this checkpoint (the
        segmenter's weights travel as their own ONNX file, see :func:`export_backend`)."""
        return {
            CONFIG_METADATA: json.dumps(self.config.to_dict()),
            "thyronet.calibration": json.dumps(self.calibration.to_dict()),
            "thyronet.info": json.dumps({k: v for k, v in self.info.items() if k not in ("calibration", "segmenter")}),
        }


def load_backend(path: str | Path, threads: int | None = None) -> Backend:
    """A checkpoint (``.ckpt`` or run folder), a CV folder (its fold ensemble) or an ONNX file
    exported by thyronet (run on ``threads`` intra-op threads, onnxruntime's default when None)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ThyronetError(f"{path}: ONNX file not found")
        session = OnnxGraph(path, threads)
        config = _exported_config(session, path)
        try:
            calibration = Calibration(**json.loads(session.metadata["thyronet.calibration"]))
            info = json.loads(session.metadata.get("thyronet.info", "{}"))
        except (KeyError, ValueError, TypeError) as error:
            raise ThyronetError(f"{path}: not exported by `thyronet export` (missing {error})") from None
        segmenter = _exported_segmenter(path, session, threads)
        if config.data.roi.mode == "predicted" and segmenter is None:
            raise ThyronetError(f"{path}: a model that finds the nodule with a segmenter, exported without it; "
                                "export the run again")
        return Backend(OnnxModel(config, calibration, session, segmenter), path, "onnxruntime", info)
    if is_ensemble(path):
        ensemble = FoldEnsemble.load(path)
        info = {**ensemble.members[0].info, "ensemble_members": len(ensemble.members)}
        return Backend(ensemble, path, f"torch, ensemble of {len(ensemble.members)}", info)
    loaded = load_checkpoint(path)
    return Backend(loaded, loaded.path, "torch", loaded.info)


def export_backend(backend: Backend, path: str | Path) -> list[Path]:
    """Write a checkpoint's classifier to ONNX at ``path``, its preprocessing and calibration in
    the file's metadata; a run that finds the nodule with a segmenter gets that segmenter written
    beside it (``<stem>.segmenter.onnx``, named in the classifier's metadata), so that the pair
    takes a raw frame end to end. Returns the files written."""
    loaded = backend.loaded
    if loaded is None:
        raise ThyronetError("export needs a PyTorch checkpoint")
    if backend.is_ensemble:
        raise ThyronetError("ONNX export of a fold ensemble is not supported; export one fold's run folder")
    path = Path(path)
    metadata = backend.metadata()
    written = []
    if loaded.segmenter is not None:
        segmenter, segmenter_file = loaded.segmenter, path.with_name(path.stem + ".segmenter.onnx")
        data = segmenter.config.data
        written.append(export_onnx(segmenter.model, segmenter_file, data.in_chans, data.preprocess.size,
                                   {CONFIG_METADATA: json.dumps(segmenter.config.to_dict())}))
        metadata[SEGMENTER_METADATA] = segmenter_file.name
    data = backend.config.data
    return [export_onnx(loaded.model, path, data.in_chans, data.preprocess.size, metadata), *written]


def _exported_segmenter(path: Path, session: OnnxGraph, threads: int | None) -> Segmenter | None:
    """The segmenter exported beside an ONNX classifier, or None where it has none."""
    name = session.metadata.get(SEGMENTER_METADATA)
    if not name:
        return None
    segmenter_file = path.with_name(name)
    if not segmenter_file.is_file():
        raise ThyronetError(f"{path}: its segmenter {segmenter_file} is missing (export writes both files; keep them together)")
    graph = OnnxGraph(segmenter_file, threads)
    return Segmenter(OnnxNetwork(graph), _exported_config(graph, segmenter_file), str(segmenter_file))


def _exported_config(graph: OnnxGraph, path: Path) -> RunConfig:
    """The run config `thyronet export` stored in an ONNX file's metadata."""
    try:
        return config_from_dict(json.loads(graph.metadata[CONFIG_METADATA]))
    except (KeyError, ValueError, TypeError) as error:
        raise ThyronetError(f"{path}: not exported by `thyronet export` (missing {error})") from None
