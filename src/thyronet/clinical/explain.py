"""Grad-CAM heat maps (the ``grad-cam`` package) and overlays a person can look at."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ..errors import ThyronetError
from ..io import atomic_path
from ..models import cam_target_layer
from .backends import Backend
from .predict import Prediction

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

    def __init__(self, backend: Backend, method: str = "gradcam") -> None:
        if backend.loaded is None:
            raise ThyronetError("Grad-CAM needs the PyTorch checkpoint, not an ONNX file")
        if method not in CAM_METHODS:
            raise ThyronetError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
        self.backend = backend
        self.method = method
        self.model = backend.loaded.model
        self.layer = cam_target_layer(self.model, backend.name)

    def __call__(self, tensor: torch.Tensor) -> np.ndarray:
        """A 1xCxHxW input -> HxW map in [0, 1] of evidence for malignancy."""
        with CAM_METHODS[self.method](model=self.model, target_layers=[self.layer]) as cam:
            heat = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(MALIGNANT_CLASS)])[0]
        return np.nan_to_num(heat.astype(np.float32))


def overlay(prepared: np.ndarray, heat: np.ndarray, mask: np.ndarray | None = None, opacity: float = 0.45) -> np.ndarray:
    """The heat map blended over the greyscale input as RGB uint8, with the outline if given."""
    rgb = cv2.cvtColor(prepared, cv2.COLOR_GRAY2RGB).astype(np.float32) / 255.0
    blended = show_cam_on_image(rgb, heat, use_rgb=True, image_weight=1.0 - opacity)
    if mask is not None:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blended, contours, -1, (255, 255, 255), 1)
    return blended


def side_by_side(prepared: np.ndarray, blended: np.ndarray, prediction: Prediction, method: str, scale: int = 3) -> Image.Image:
    """Input beside overlay, enlarged for viewing, with the probability and decision in a header."""
    size = (prepared.shape[1] * scale, prepared.shape[0] * scale)
    left = Image.fromarray(cv2.cvtColor(prepared, cv2.COLOR_GRAY2RGB)).resize(size, Image.NEAREST)
    right = Image.fromarray(blended).resize(size, Image.BILINEAR)
    header = 34
    canvas = Image.new("RGB", (size[0] * 2 + 6, size[1] + header), "white")
    canvas.paste(left, (0, header))
    canvas.paste(right, (size[0] + 6, header))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), Path(prediction.input).name, fill="black")
    draw.text((4, 18), f"P(malignant) {prediction.probability:.2f} -> {prediction.decision} "
                       f"(threshold {prediction.threshold:.2f}); {method} for 'malignant'", fill="black")
    return canvas


def save_png(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
