"""Grad-CAM heat maps of a classifier (the ``grad-cam`` package): where the model looked."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from thyronet.errors import ThyronetError
from thyronet.inference.backends import Backend
from thyronet.models import cam_target_layer

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}
MALIGNANT_CLASS = 1


class CamExplainer:
    """Computes class activation maps for the malignant class at the model's registry layer.

    The grad-cam object is used as a context manager per call, so its hooks are released and
    memory does not grow over many images.
    """

    def __init__(self, backend: Backend, method: str = "gradcam", layer: str | None = None) -> None:
        """``layer``: the module to explain by its name in the network (``layer3``), instead of the
        registry's (the last stage: 4x4 cells at a 128-px input, too coarse to say whether the
        heat sits on a nodule that fills a fifth of the crop)."""
        if backend.loaded is None:
            raise ThyronetError("Grad-CAM needs the PyTorch checkpoint, not an ONNX file")
        if method not in CAM_METHODS:
            raise ThyronetError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
        self.backend = backend
        self.method = method
        self.model = backend.loaded.model
        self.layer = cam_target_layer(self.model, backend.name) if layer is None else self._named_layer(layer)

    def _named_layer(self, name: str) -> torch.nn.Module:
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            stages = [n for n, _ in self.model.named_children()]
            raise ThyronetError(f"{self.backend.name} has no layer {name!r} (its top-level layers: {', '.join(stages)})") from None

    def __call__(self, tensor: torch.Tensor) -> np.ndarray:
        """A 1xCxHxW input -> HxW map in [0, 1] of evidence for malignancy."""
        with CAM_METHODS[self.method](model=self.model, target_layers=[self.layer]) as cam:
            heat = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(MALIGNANT_CLASS)])[0]
        return np.nan_to_num(heat.astype(np.float32))
