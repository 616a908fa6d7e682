"""FastAPI application: ``POST /api/v1/predict``, ``GET /health`` (liveness), ``GET /ready`` (the model
is loaded: readiness for a load balancer), the page at ``/`` behind a login at ``/login``, and the
account calls (``/api/v1/login``, ``logout``, ``me``, ``password``, ``users``). ``serve --workers N``
runs N processes of it behind one port, each building it with :func:`app_from_environment`.

Access: every route but ``/health``, the login page and its files needs a user (security.py); every
upload, login and account change is a line of the audit trail, which names DICOM UIDs, never a
patient; answers do not echo the uploaded file's name (it often is the patient's).

Safety: uploads are size-limited and read in chunks, their type is checked by content (magic
bytes, not the file name), decoding refuses decompression bombs, each prediction has a time
limit, the model is loaded once and used under a lock (Grad-CAM hooks are not thread-safe),
and nothing is written outside a per-request temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel

from thyronet import __version__
from thyronet.apps.access import Accounts, AuditLog, default_state_dir
from thyronet.apps.explain import frame_overlay
from thyronet.apps.report import DISCLAIMER
from thyronet.apps.serve.schema import prediction_model
from thyronet.apps.serve.security import SESSION_COOKIE, Access, Principal, security_headers
from thyronet.data.dicom import dataset_spacing_mm
from thyronet.data.imageio import read_upload
from thyronet.data.preprocess import Box
from thyronet.data.region import parse_box
from thyronet.errors import DataError, ImageTooLargeError, ThyronetError
from thyronet.inference.answers import predict_image
from thyronet.inference.backends import Backend, load_backend
from thyronet.inference.cam import CamExplainer

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)
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

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)  # also when it comes as text from ``serve --workers N``


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

    def predict(self, data: bytes, filename: str, box: Box | None = None, deadline: float = math.inf) -> dict[str, Any]:
        """One request's answer. A request whose client has given up (``deadline``, from
        ``time.monotonic``) stops at the next step instead of holding the model for nothing.
        ``filename`` serves to decode the upload; the answer does not repeat it."""
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
            heat = self.explainer(self.backend.to_tensor(answer.prepared.image)) if self.explainer else None
        finally:
            self.lock.release()
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
                "area": round(size.area, 2), "unit": size.unit, "taller_than_wide": size.taller_than_wide},
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


class Credentials(BaseModel):
    username: str
    password: str


class PasswordChange(BaseModel):
    current: str
    new: str


def create_app(model: str | Path | Backend, settings: ServiceSettings | None = None) -> FastAPI:
    """The application for one model (a checkpoint, run folder, ONNX file or loaded backend)."""
    settings = settings or ServiceSettings()
    backend = model if isinstance(model, Backend) else load_backend(model)
    service = Service(backend, settings)
    access = Access(Accounts(settings.state_dir), AuditLog(settings.state_dir / "audit.jsonl"), tls=settings.tls)
    audit = access.audit
    app = FastAPI(
        title="thyronet",
        version=__version__,
        description="Malignancy probability and Grad-CAM for thyroid nodule ultrasound. " + DISCLAIMER,
        docs_url=None, redoc_url=None, openapi_url=None,  # the schema behind a login below; no page from a CDN
    )
    app.state.service, app.state.access = service, access
    viewer, radiologist, admin = (access.require(role) for role in ("viewer", "radiologist", "admin"))
    own_account = access.require("viewer", during_password_change=True)
    headers = security_headers(settings.tls)

    @app.middleware("http")
    async def add_security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(headers)
        return response

    @app.exception_handler(HTTPException)
    async def json_errors(request: Request, error: HTTPException) -> Response:
        if error.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/login", status_code=303)  # a browser: to the login page
        return JSONResponse({"detail": error.detail, "status": error.status_code}, status_code=error.status_code,
                            headers=error.headers)

    @app.exception_handler(Exception)
    async def internal_errors(request: Request, error: Exception) -> JSONResponse:
        # the answer carries no stack trace or path; the log names the route and the error's kind only
        log.error("internal error on %s %s: %s", request.method, request.url.path, error.__class__.__name__)
        return JSONResponse({"detail": "internal error", "status": 500}, status_code=500, headers=headers)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the process answers (public: it says nothing about patients)."""
        return {"status": "ok", "model": backend.name, "runtime": backend.runtime, "version": __version__}

    @app.get("/ready")
    def ready(principal: Principal = Depends(viewer)) -> dict[str, Any]:
        """Readiness, for a load balancer: this worker has its model loaded and takes requests."""
        return {"ready": True, "model": backend.name, "source": str(backend.source), "worker_pid": os.getpid()}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(principal: Principal = Depends(viewer)) -> dict[str, Any]:
        """The API's schema (FastAPI builds it only for its own, public, route: this one needs a login)."""
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                             routes=app.routes)
        return app.openapi_schema

    @app.post("/api/v1/login")
    def login(credentials: Credentials, request: Request, response: Response) -> dict[str, Any]:
        """Open a session: sets the session cookie and answers the session's CSRF token."""
        client = request.client.host if request.client else "unknown"
        keys = (f"address:{client}", f"user:{credentials.username}")
        wait = access.limiter.retry_after(*keys)
        if wait is not None:
            audit.record(credentials.username, None, "login", "refused: rate limit")
            raise HTTPException(429, f"too many failed logins: try again in {math.ceil(wait)} s",
                                headers={"Retry-After": str(math.ceil(wait))})
        user = access.accounts.authenticate(credentials.username, credentials.password)
        if user is None:
            access.limiter.failed(*keys)
            audit.record(credentials.username, None, "login", "refused: wrong user name or password")
            raise HTTPException(401, "wrong user name or password")
        session, csrf = access.accounts.open_session(user.name, access.session_lifetime_s)
        response.set_cookie(SESSION_COOKIE, session, max_age=int(access.session_lifetime_s), httponly=True,
                            secure=settings.tls, samesite="strict", path="/")
        audit.record(user.name, user.role, "login", "ok")
        return {"user": user.name, "role": user.role, "csrf_token": csrf, "must_change_password": user.must_change_password}

    @app.post("/api/v1/logout")
    def logout(response: Response, principal: Principal = Depends(own_account)) -> dict[str, Any]:
        if principal.session:
            access.accounts.close_session(principal.session)
        response.delete_cookie(SESSION_COOKIE, path="/")
        audit.record(principal.user.name, principal.user.role, "logout", "ok")
        return {"logged_out": True}

    @app.get("/api/v1/me")
    def me(principal: Principal = Depends(own_account)) -> dict[str, Any]:
        """Who is logged in, with the session's CSRF token for the page's state-changing calls."""
        user = principal.user
        return {"user": user.name, "role": user.role, "csrf_token": principal.csrf,
                "must_change_password": user.must_change_password}

    @app.post("/api/v1/password")
    def change_password(change: PasswordChange, principal: Principal = Depends(own_account)) -> dict[str, Any]:
        user = principal.user
        try:
            access.accounts.change_password(user.name, change.current, change.new)
        except ThyronetError as error:
            audit.record(user.name, user.role, "password change", f"refused: {error}")
            raise HTTPException(422, str(error)) from None
        audit.record(user.name, user.role, "password change", "ok")
        return {"changed": True}

    @app.get("/api/v1/users")
    def users(principal: Principal = Depends(admin)) -> list[dict[str, Any]]:
        """The accounts (administrators only)."""
        audit.record(principal.user.name, principal.user.role, "list users", "ok")
        return [{"user": u.name, "role": u.role, "disabled": u.disabled} for u in access.accounts.users()]

    @app.post("/api/v1/predict", response_model=prediction_model())
    async def predict(
        file: UploadFile = File(..., description="an ultrasound image (JPEG, PNG, BMP, TIFF) or DICOM file"),
        box: str | None = Form(None, description="the nodule's box x0,y0,x1,y1 in image pixels, instead of the predicted one"),
        principal: Principal = Depends(viewer),
    ):
        user = principal.user

        def refuse(status: int, detail: str, uid: str | None = None) -> HTTPException:
            audit.record(user.name, user.role, "predict", f"refused {status}: {detail}", uid)
            return HTTPException(status, detail)

        nodule_box = None
        if box:
            try:
                nodule_box = parse_box(box)
            except ValueError as error:
                raise refuse(422, str(error)) from None
            if backend.config.data.roi.mode == "none":
                raise refuse(422, "box: this model looks at the whole scan area (trained without a region of interest)")
        data = await read_limited(file, settings.max_upload_bytes)
        if not data:
            raise refuse(400, "empty upload")
        if sniff_type(data[:132]) is None:
            raise refuse(415, "not an image: expected JPEG, PNG, BMP, TIFF, GIF or DICOM content")
        uid = upload_uid(data)
        name = Path(file.filename or "upload").name
        deadline = time.monotonic() + settings.timeout_s
        try:
            answer = await asyncio.wait_for(run_in_threadpool(service.predict, data, name, nodule_box, deadline),
                                            settings.timeout_s)
        except DataError as error:  # its problem, not its path: the file's name may be the patient's
            raise refuse(413 if isinstance(error, ImageTooLargeError) else 422, f"upload: {error.problem}", uid) from None
        except (TimeoutError, RequestExpired):
            raise refuse(504, f"prediction took longer than {settings.timeout_s:.0f} s", uid) from None
        audit.record(user.name, user.role, "predict", "ok", uid)
        return answer

    @app.get("/login", include_in_schema=False)
    def login_page() -> FileResponse:
        return FileResponse(STATIC / "login.html", media_type="text/html")

    @app.get("/", include_in_schema=False)
    def page(principal: Principal = Depends(viewer)) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # the pages' scripts and styles: public
    return app


def app_from_environment() -> FastAPI:
    """The application a uvicorn worker process builds for itself (``serve --workers N``): the model
    named in ``THYRONET_SERVE`` loaded once per worker."""
    spec = json.loads(os.environ["THYRONET_SERVE"])  # written by `thyronet serve --workers N`
    torch.set_num_threads(spec["threads"])
    return create_app(spec["model"], ServiceSettings(**spec["settings"]))
