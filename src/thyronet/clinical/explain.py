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

from ..engine.inference import PreparedInput
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


REGION_COLOUR = (255, 200, 0)  # the crop the classifier saw
NODULE_COLOUR = (0, 230, 120)  # the nodule: predicted contour, or the box it was given


def frame_overlay(frame: np.ndarray, prepared: PreparedInput, heat: np.ndarray | None = None,
                  opacity: float = 0.45) -> np.ndarray:
    """The whole frame at its own resolution as RGB uint8: the heat map carried back from the
    model input onto the region it came from, that region's outline, and the nodule's contour."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    x0, y0, x1, y1 = prepared.geometry.crop
    if heat is not None:
        frame_heat = prepared.geometry.to_frame(heat.astype(np.float32))
        blended = show_cam_on_image(rgb.astype(np.float32) / 255.0, frame_heat, use_rgb=True, image_weight=1.0 - opacity)
        rgb[y0:y1, x0:x1] = blended[y0:y1, x0:x1]
    if prepared.region != "scan area":
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), REGION_COLOUR, 1)
    if prepared.nodule_mask is not None and prepared.nodule_mask.any():
        contours, _ = cv2.findContours(prepared.nodule_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, NODULE_COLOUR, 2)
    elif prepared.nodule_box is not None:
        bx0, by0, bx1, by1 = prepared.nodule_box
        cv2.rectangle(rgb, (bx0, by0), (bx1 - 1, by1 - 1), NODULE_COLOUR, 2)
    return rgb


def side_by_side(plain: np.ndarray, blended: np.ndarray, prediction: Prediction, method: str) -> Image.Image:
    """The frame with its region and nodule contour beside the same with the heat map, under a
    header with the probability, decision and (with descriptor heads) the predicted descriptors."""
    width, height = plain.shape[1], plain.shape[0]
    lines = [Path(prediction.input).name + f"  (looked at: {prediction.region})",
             f"P(malignant) {prediction.probability:.2f} -> {prediction.decision} (threshold {prediction.threshold:.2f}); "
             f"{method} for 'malignant'"]
    if prediction.description:
        lines.append(f"predicted: {prediction.description}; ACR TI-RADS {prediction.tirads_points} points "
                     f"({prediction.tirads_level}), derived from the model's descriptors")
    header = 6 + 15 * len(lines)
    canvas = Image.new("RGB", (width * 2 + 6, height + header), "white")
    canvas.paste(Image.fromarray(plain), (0, header))
    canvas.paste(Image.fromarray(blended), (width + 6, header))
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((4, 3 + 15 * row), line, fill="black")
    return canvas


def save_png(image: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
