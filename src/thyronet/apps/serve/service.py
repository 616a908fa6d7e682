"""The loaded model and the uploads it answers: the service's settings, an upload's type by its
content, its DICOM header (spacing, UIDs, what a read records of it), reading it within a size
limit, and one upload's answer under the model's lock and the request's deadline."""

from __future__ import annotations

import base64
import io
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException, UploadFile
from PIL import Image

from thyronet import __version__
from thyronet.apps.access import default_state_dir
from thyronet.apps.explain import frame_overlay
from thyronet.apps.report import DISCLAIMER
from thyronet.data.dicom import dataset_spacing_mm
from thyronet.data.imageio import read_upload
from thyronet.data.preprocess import Box
from thyronet.data.readstore import Source
from thyronet.errors import DataError
from thyronet.inference.answers import Answer, predict_image
from thyronet.inference.backends import Backend
from thyronet.inference.cam import CamExplainer

MAGIC = {
    b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"BM": "bmp", b"II*\x00": "tiff", b"MM\x00*": "tiff",
    b"GIF87a": "gif", b"GIF89a": "gif",  # an animated GIF: its first frame
}


@dataclass
class ServiceSettings:
    max_upload_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 30.0
    explain: bool = True
    refuse_ood: bool = False  # 422 instead of a warning for inputs unlike the training images
    state_dir: Path = field(default_factory=default_state_dir)  # accounts and the audit trail
    tls: bool = False  # served over HTTPS: Secure cookies and HSTS
    store_dir: Path | None = None  # the reading store (worklist, reads, outcomes); None: no reading workflow
    send_to: tuple[str, ...] = ()  # HOST:PORT:AET of each PACS that receives the signed reads' SRs

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)  # also when it comes as text from ``serve --workers N``
        self.store_dir = None if self.store_dir is None else Path(self.store_dir)
        self.send_to = tuple(self.send_to)


def sniff_type(head: bytes) -> str | None:
    """The upload's format from its first bytes (DICOM: 'DICM' at offset 128), or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def png_base64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class RequestExpired(Exception):
    """The request's time ran out; the client has been answered 504 already."""


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise RequestExpired


class Service:
    """The loaded model and what a request needs from it, shared by all requests."""

    def __init__(self, backend: Backend, settings: ServiceSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.lock = threading.Lock()
        can_explain = settings.explain and backend.loaded is not None
        self.explainer = CamExplainer(backend) if can_explain else None

    def answer(self, data: bytes, filename: str, box: Box | None = None, deadline: float = math.inf,
               explain: bool = True) -> tuple[Answer, np.ndarray, np.ndarray | None]:
        """One upload's answer, its decoded frame and (with ``explain``) the Grad-CAM heat map. A
        request whose client has given up (``deadline``, from ``time.monotonic``) stops at the
        next step instead of holding the model for nothing. ``filename`` serves to decode the
        upload; the answer does not repeat it."""
        image = read_upload(data, filename)  # decoded inside a temporary directory
        wait = max(0.0, deadline - time.monotonic()) if math.isfinite(deadline) else -1  # -1: no limit
        if not self.lock.acquire(timeout=wait):
            raise RequestExpired
        try:
            _check_deadline(deadline)
            answer = predict_image(self.backend, image, filename, box, self.settings.refuse_ood, upload_spacing_mm(data))
            if answer.prediction.error:  # refused as out of distribution
                raise DataError(filename, answer.prediction.error)
            _check_deadline(deadline)  # Grad-CAM costs as much as the prediction again
            heat = self.explainer(self.backend.to_tensor(answer.prepared.image)) if self.explainer and explain else None
        finally:
            self.lock.release()
        return answer, image, heat

    def predict(self, data: bytes, filename: str, box: Box | None = None, deadline: float = math.inf) -> dict[str, Any]:
        """One request's answer as the REST API gives it (``PredictionAnswer``)."""
        answer, image, heat = self.answer(data, filename, box, deadline)
        prediction, prepared = answer.prediction, answer.prepared
        calibration = self.backend.calibration
        flat, size, advice = prediction.to_dict(), prediction.size, prediction.recommendation
        return {
            "probability_malignant": prediction.probability,
            "decision": prediction.decision,
            "threshold": calibration.threshold,
            "target_sensitivity": calibration.target_sensitivity,
            "validation_sensitivity": calibration.val_sensitivity,
            "validation_specificity": calibration.val_specificity,
            "model": {"name": self.backend.name, "runtime": self.backend.runtime, "thyronet_version": __version__,
                      "data_fingerprint": self.backend.info.get("data_fingerprint")},
            "ood_score": prediction.ood_score,
            "warning": prediction.warning,
            "region": prediction.region,
            "nodule_box": None if prepared.nodule_box is None else list(prepared.nodule_box),
            "descriptors": flat["descriptors"],
            "description": prediction.description,
            "nodule_size": None if size is None else {
                "long_axis": round(size.long_axis, 2), "short_axis": round(size.short_axis, 2),
                "area": round(size.area, 2), "unit": size.unit, "taller_than_wide": size.taller_than_wide,
                "height_to_width": round(size.height_to_width, 3)},
            "acr_tirads": flat["acr_tirads"],
            "tirads_points": prediction.tirads_points,
            "tirads_level": prediction.tirads_level,
            "acr_recommendation": None if advice is None else {
                "action": advice.action, "reason": advice.reason, "follow_up_years": list(advice.follow_up_years),
                "note": "derived from the predicted descriptors and outline: decision support, not a diagnosis"},
            "input_png": png_base64(frame_overlay(image, prepared)),
            "overlay_png": None if heat is None else png_base64(frame_overlay(image, prepared, heat, opacity=1.0)),
            "notice": DISCLAIMER,
        }


def _dicom_header(data: bytes):
    """A DICOM upload's header (no pixels), None for other images."""
    if sniff_type(data[:132]) != "dicom":
        return None
    import pydicom

    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


def upload_spacing_mm(data: bytes) -> tuple[float, float] | None:
    """A DICOM upload's pixel spacing (row, column) in mm; None for other images or without calibration."""
    header = _dicom_header(data)
    return None if header is None else dataset_spacing_mm(header)


def upload_uid(data: bytes) -> str | None:
    """A DICOM upload's SOP Instance UID (what the audit trail names), None for other images."""
    try:
        header = _dicom_header(data)
    except Exception:  # an unreadable header is refused by the prediction itself, with its reason
        return None
    return None if header is None else str(header.get("SOPInstanceUID", "")) or None


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """Read at most ``limit`` bytes in chunks; 413 as soon as the upload is larger."""
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload larger than {limit // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def upload_source(data: bytes) -> Source:
    """What a DICOM upload's header says of it, for a read (nothing for other images)."""
    header = _dicom_header(data)
    if header is None:
        return Source()

    def text(name: str) -> str | None:
        return str(header.get(name, "") or "") or None

    return Source(text("StudyInstanceUID"), text("SeriesInstanceUID"), text("SOPInstanceUID"), text("AccessionNumber"),
                  text("PatientName"), text("PatientID"), dataset_spacing_mm(header))
