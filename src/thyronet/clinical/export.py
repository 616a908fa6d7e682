"""Export to ONNX (one file, dynamic batch axis) and inference through onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ThyronetError
from ..io import atomic_path

OPSET = 18


def export_onnx(
    model: nn.Module, path: str | Path, in_chans: int, size: int, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``model`` as a single ONNX file whose input is (batch, in_chans, size, size);
    ``metadata`` (e.g. preprocessing and calibration) is stored in the file's model properties."""
    path = Path(path)
    model.eval()
    example = torch.randn(1, in_chans, size, size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(tmp), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
            dynamo=False, external_data=False,
        )
        if metadata:
            import onnx

            proto = onnx.load(str(tmp))
            onnx.helper.set_model_props(proto, metadata)
            onnx.save(proto, str(tmp))
    return path


class OnnxClassifier:
    """An onnxruntime session with the same call shape as the torch model (numpy in, numpy out)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ThyronetError(f"{path}: not a loadable ONNX model ({error})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.astype(np.float32)})[0]
