"""Export to ONNX (one file, dynamic batch axis) and inference through onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from thyronet.errors import ThyronetError
from thyronet.io import atomic_path

OPSET = 18


def export_onnx(
    model: nn.Module, path: str | Path, in_chans: int, size: int, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``model`` as a single ONNX file whose input is (batch, in_chans, size, size);
    ``metadata`` (e.g. preprocessing and calibration) is stored in the file's model properties."""
    path = Path(path)
    model.eval()
    example = torch.randn(1, in_chans, size, size)
    uneven = uneven_adaptive_pooling(model, example)
    if uneven:
        raise ThyronetError(f"{path}: this {size}-px model cannot be exported to ONNX: its adaptive pooling maps {uneven}, "
                            "which ONNX cannot express (VGG and AlexNet below 224 px); use the checkpoint, or a model "
                            "trained at 224 px")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                dynamo=False, external_data=False,
            )
        except torch.onnx.OnnxExporterError as error:
            reason = str(error).split(" [Caused by")[0]
            raise ThyronetError(f"{path}: this model cannot be exported to ONNX ({reason}); use the checkpoint") from None
        if metadata:
            import onnx

            proto = onnx.load(str(tmp))
            onnx.helper.set_model_props(proto, metadata)
            onnx.save(proto, str(tmp))
    return path


def uneven_adaptive_pooling(model: nn.Module, example: torch.Tensor) -> str | None:
    """The first adaptive pooling whose input is not a whole multiple of its output ("3x3 -> 7x7"),
    or None. torch's ONNX exporter refuses those, after printing the whole graph to the terminal."""
    uneven: list[str] = []

    def check(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        (height, width), (out_h, out_w) = inputs[0].shape[-2:], output.shape[-2:]
        if height % out_h or width % out_w:
            uneven.append(f"{height}x{width} -> {out_h}x{out_w}")

    pools = [m for m in model.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    handles = [pool.register_forward_hook(check) for pool in pools]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return uneven[0] if uneven else None


class OnnxGraph:
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


class OnnxNetwork:
    """An ONNX graph called like the torch network it was exported from (tensor in, tensor out),
    so that code written around the network (the segmenter's pre- and post-processing) runs it
    unchanged."""

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph

    def eval(self) -> OnnxNetwork:
        return self

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.graph(batch.numpy()))
