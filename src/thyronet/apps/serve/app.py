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
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from thyronet import __version__
from thyronet.apps.access import Accounts, AuditLog
from thyronet.apps.dicom_peers import Destination
from thyronet.apps.report import DISCLAIMER
from thyronet.apps.serve.reads import reading_routes
from thyronet.apps.serve.schema import prediction_model
from thyronet.apps.serve.security import SESSION_COOKIE, Access, Principal, security_headers
from thyronet.apps.serve.service import RequestExpired, Service, ServiceSettings, read_limited, sniff_type, upload_uid
from thyronet.data.readstore import ReadStore
from thyronet.data.region import parse_box
from thyronet.errors import DataError, ImageTooLargeError, ThyronetError
from thyronet.inference.backends import Backend, load_backend

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


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

    if settings.store_dir is not None:  # the reading workflow: its API and its pages
        app.include_router(reading_routes(ReadStore(settings.store_dir), service, access, settings.max_upload_bytes,
                                          settings.timeout_s, [Destination.parse(text) for text in settings.send_to]))

        @app.get("/reads", include_in_schema=False)
        def reads_page(principal: Principal = Depends(viewer)) -> FileResponse:
            return FileResponse(STATIC / "reads.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # the pages' scripts and styles: public
    return app


def app_from_environment() -> FastAPI:
    """The application a uvicorn worker process builds for itself (``serve --workers N``): the model
    named in ``THYRONET_SERVE`` loaded once per worker."""
    spec = json.loads(os.environ["THYRONET_SERVE"])  # written by `thyronet serve --workers N`
    torch.set_num_threads(spec["threads"])
    return create_app(spec["model"], ServiceSettings(**spec["settings"]))
