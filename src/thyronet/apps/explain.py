"""Overlays a person can look at: the region, the nodule and the Grad-CAM map on the frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pytorch_grad_cam.utils.image import show_cam_on_image

from thyronet.inference.answers import Answer, Prediction, tirads_note
from thyronet.inference.backends import Backend
from thyronet.inference.cam import CamExplainer
from thyronet.inference.predictor import PreparedInput
from thyronet.io import atomic_path

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
    if prediction.descriptors:
        lines.append(f"predicted: {prediction.description or 'no descriptor assessed'}; {tirads_note(prediction)}")
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


def overlays(backend: Backend, answers: Sequence[Answer], method: str, layer: str | None = None
             ) -> list[tuple[Answer, np.ndarray | None, np.ndarray | None]]:
    """(answer, frame with region and contour, the same with the heat map or None) per answer;
    Grad-CAM needs the PyTorch checkpoint (an ONNX backend gets no heat map)."""
    explainer = CamExplainer(backend, method, layer) if backend.loaded is not None else None
    rows = []
    for answer in answers:
        if answer.prepared is None:
            rows.append((answer, None, None))
            continue
        plain = frame_overlay(answer.frame, answer.prepared)
        heat = explainer(backend.to_tensor(answer.prepared.image)) if explainer else None
        rows.append((answer, plain, None if heat is None else frame_overlay(answer.frame, answer.prepared, heat)))
    return rows


def write_explanations(backend: Backend, answers: Sequence[Answer], out: Path, method: str = "gradcam",
                       layer: str | None = None) -> list[tuple[Prediction, Path | None]]:
    """One PNG per answer (input and heat map side by side) in ``out``; (prediction, PNG or None
    for an input that failed)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Prediction, Path | None]] = []
    for answer, plain, blended in overlays(backend, answers, method, layer):
        prediction = answer.prediction
        if prediction.error:
            written.append((prediction, None))
            continue
        source, _, frame = prediction.input.partition("#")
        name = Path(source).stem + (f"_f{frame}" if frame else "")
        written.append((prediction, save_png(side_by_side(plain, blended, prediction, method), out / f"{name}_{method}.png")))
    return written
