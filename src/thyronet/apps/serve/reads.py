"""The reading workflow's REST routes: the model proposes, the radiologist confirms or changes,
signs, and later attaches the outcome; every call is audited by read id (never a patient).

``POST /api/v1/reads`` (an upload: a read with the model's proposal), ``GET /api/v1/reads`` (the
worklist), ``GET /api/v1/reads/{id}``, ``GET /api/v1/reads/{id}/image``, ``PUT /api/v1/reads/{id}``
(confirmed outline, calipers, categories: the level and recommendation come back recomputed),
``POST /api/v1/reads/{id}/sign``, ``POST /api/v1/reads/{id}/amend``, ``POST /api/v1/reads/{id}/outcome``.
Viewers see the worklist without patient details; radiologists read, sign and record outcomes.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

from thyronet.apps.access import owner_only_folder
from thyronet.apps.dicom_out import write_signed_report
from thyronet.apps.dicom_peers import Destination
from thyronet.apps.dicom_send import send_waiting
from thyronet.apps.serve.security import Access, Principal
from thyronet.apps.serve.service import RequestExpired, Service, read_limited, sniff_type, upload_source
from thyronet.data.imageio import read_image
from thyronet.data.readstore import Read, ReadError, ReadStore
from thyronet.data.tirads import CATEGORIES
from thyronet.errors import DataError
from thyronet.inference.answers import Answer
from thyronet.inference.measure import largest_contour

REPORTS = "reports"  # the store's folder of signed reads' SRs
OUTBOX = "outbox"  # per destination, the SRs not yet stored there
CALLING_AE_TITLE = "THYRONET"


class Confirmation(BaseModel):
    """What the radiologist confirms or changes; a field left out keeps its value."""

    outline: list[list[float]] | None = Field(None, description="the nodule's outline, [[x, y], ...] in image pixels")
    calipers: dict[str, list[list[float]]] | None = Field(
        None, description="{'long': [[x0, y0], [x1, y1]], 'short': [[x0, y0], [x1, y1]]} in image pixels")
    categories: dict[str, list[str]] | None = Field(None, description="ACR TI-RADS values per category")


class Outcome(BaseModel):
    kind: str = Field(description="bethesda (cytology, I-VI) or pathology (surgical: benign or malignant)")
    value: str


def proposal(answer: Answer) -> dict[str, Any]:
    """The model's proposal for a read: probability, descriptors, the ACR categories it can fill,
    the outline and the calipers (in the image's pixels)."""
    prediction, prepared = answer.prediction, answer.prepared
    mask = prepared.nodule_mask if prepared is not None else None
    outline = None
    if mask is not None and mask.any():
        contour = cv2.approxPolyDP(largest_contour(mask), 1.0, True)  # a point every few pixels: editable by hand
        outline = [[float(x), float(y)] for x, y in contour[:, 0]]
    size = prediction.size
    data = prediction.to_dict()
    return {
        "probability": prediction.probability, "decision": prediction.decision, "threshold": prediction.threshold,
        "warning": prediction.warning, "descriptors": data["descriptors"],
        "categories": {} if prediction.acr is None else {k: list(v) for k, v in prediction.acr.values.items()},
        "outline": outline,
        "calipers": None if size is None else {"long": [list(p) for p in size.long_line], "short": [list(p) for p in size.short_line]},
        "level": prediction.tirads_level,
        "recommendation": None if prediction.recommendation is None else prediction.recommendation.action,
    }


def read_view(read: Read, principal: Principal) -> dict[str, Any]:
    """A read as the API shows it; patient details only to radiologists and admins."""
    assessment, recommendation = read.assessment()
    details = principal.user.may("radiologist")
    source = read.source
    return {
        "id": read.id, "read": read.read, "version": read.version, "replaces": read.replaces, "state": read.state,
        "arrived": read.arrived, "updated": read.updated, "model": read.model, "proposal": read.proposal,
        "confirmed": read.confirmed, "changed": read.changed(),
        "acr_tirads": {"points": assessment.points, "level": assessment.level, "missing": list(assessment.missing),
                       "note": assessment.note()},
        "recommendation": {"action": recommendation.action, "reason": recommendation.reason,
                           "follow_up_years": list(recommendation.follow_up_years)},
        "max_diameter_mm": read.max_diameter_mm(), "calibrated": source.spacing is not None,
        "suspicion": read.suspicion, "uncertainty": read.uncertainty,
        "signed_by": read.signed_by, "signed_at": read.signed_at, "outcomes": read.outcomes, "label": read.label(),
        "patient": {"name": source.patient_name, "id": source.patient_id, "accession": source.accession,
                    "study_uid": source.study_uid} if details else None,
    }


def reading_routes(store: ReadStore, service: Service, access: Access, max_upload_bytes: int, timeout_s: float,
                   destinations: Sequence[Destination] = ()) -> APIRouter:
    """The routes over ``store``, answering uploads with ``service`` (the loaded model); a signed
    read's SR goes to each of ``destinations`` (PACS)."""
    viewer, radiologist = access.require("viewer"), access.require("radiologist")
    audit = access.audit
    router = APIRouter(prefix="/api/v1/reads", tags=["reading"])

    def call(principal: Principal, action: str, read_id: str, work):
        try:
            result = work()
        except ReadError as error:
            audit.record(principal.user.name, principal.user.role, action, f"refused {error.status}: {error}", read_id)
            raise HTTPException(error.status, str(error)) from None
        audit.record(principal.user.name, principal.user.role, action, "ok", read_id)
        return read_view(result, principal)

    @router.post("", status_code=201)
    async def create(file: UploadFile = File(..., description="an ultrasound image or DICOM file"),
                     principal: Principal = Depends(radiologist)) -> dict[str, Any]:
        data = await read_limited(file, max_upload_bytes)
        if not data or sniff_type(data[:132]) is None:
            raise HTTPException(415, "not an image: expected JPEG, PNG, BMP, TIFF, GIF or DICOM content")
        name = Path(file.filename or "upload").name
        deadline = time.monotonic() + timeout_s
        try:
            answer, _, _ = await asyncio.wait_for(run_in_threadpool(service.answer, data, name, None, deadline, False), timeout_s)
            source = upload_source(data)
        except DataError as error:
            raise HTTPException(422, f"upload: {error.problem}") from None
        except (TimeoutError, RequestExpired):
            raise HTTPException(504, f"prediction took longer than {timeout_s:.0f} s") from None
        backend = service.backend
        model = {"name": backend.name, "runtime": backend.runtime, "run": backend.info.get("run_dir"),
                 "data_fingerprint": backend.info.get("data_fingerprint")}
        suffix = ".dcm" if data[128:132] == b"DICM" else Path(name).suffix
        read = store.add(data, suffix, source, proposal(answer), model)
        audit.record(principal.user.name, principal.user.role, "read create", "ok", read.id)
        return read_view(read, principal)

    @router.get("")
    def worklist(state: str | None = Query(None, description="proposed, in progress or signed"),
                 sort: str = Query("arrival", description="arrival, suspicion or uncertainty"),
                 principal: Principal = Depends(viewer)) -> list[dict[str, Any]]:
        try:
            reads = store.worklist(state, sort)
        except ReadError as error:
            raise HTTPException(error.status, str(error)) from None
        return [read_view(read, principal) for read in reads]

    @router.get("/vocabulary")
    def vocabulary(principal: Principal = Depends(viewer)) -> list[dict[str, Any]]:
        """ACR TI-RADS's categories, their values and points, for the reading view's choices."""
        return [{"name": c.name, "values": dict(c.points), "multiple": c.multiple} for c in CATEGORIES.values()]

    @router.get("/{read_id}")
    def get(read_id: str, principal: Principal = Depends(viewer)) -> dict[str, Any]:
        return call(principal, "read open", read_id, lambda: store.get(read_id))

    @router.get("/{read_id}/image", response_class=Response)
    def image(read_id: str, principal: Principal = Depends(viewer)) -> Response:
        try:
            frame = read_image(store.get(read_id).image)
        except ReadError as error:
            raise HTTPException(error.status, str(error)) from None
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.put("/{read_id}")
    def confirm(read_id: str, confirmation: Confirmation, principal: Principal = Depends(radiologist)) -> dict[str, Any]:
        changes = confirmation.model_dump(exclude_unset=True)
        return call(principal, "read confirm", read_id, lambda: store.confirm(read_id, changes))

    @router.post("/{read_id}/sign")
    def sign(read_id: str, principal: Principal = Depends(radiologist)) -> dict[str, Any]:
        view = call(principal, "read sign", read_id, lambda: store.sign(read_id, principal.user.name))
        read = store.get(read_id)
        if read.image.suffix == ".dcm":  # the signed read as an SR beside the image, and to the PACS
            try:
                report = write_signed_report(read, owner_only_folder(store.folder / REPORTS))
            except DataError as error:
                view["sr_error"] = error.problem
                return view
            view["sr"], view["sent"] = report.name, send_report(report)
        return view

    def send_report(report: Path) -> dict[str, bool]:
        """The SR to every destination; one that is down keeps it in its outbox, sent with the next signature."""
        sent = {}
        for destination in destinations:
            outbox = owner_only_folder(store.folder / OUTBOX / destination.folder_name)
            copy = outbox / report.name
            if not copy.exists():
                os.link(report, copy)
            send_waiting(outbox, destination, CALLING_AE_TITLE)
            sent[str(destination)] = not copy.exists()  # stored: it left the outbox
        return sent

    @router.get("/{read_id}/sr", response_class=FileResponse)
    def signed_report(read_id: str, principal: Principal = Depends(radiologist)) -> FileResponse:
        try:
            read = store.get(read_id)
        except ReadError as error:
            raise HTTPException(error.status, str(error)) from None
        path = store.folder / REPORTS / f"{read.id}.sr.dcm"
        if not path.is_file():
            raise HTTPException(404, f"read {read_id} has no signed SR (not signed, or not a DICOM image)")
        audit.record(principal.user.name, principal.user.role, "read sr", "ok", read_id)
        return FileResponse(path, media_type="application/dicom", filename=path.name)

    @router.post("/{read_id}/amend", status_code=201)
    def amend(read_id: str, principal: Principal = Depends(radiologist)) -> dict[str, Any]:
        return call(principal, "read amend", read_id, lambda: store.amend(read_id))

    @router.post("/{read_id}/outcome")
    def outcome(read_id: str, body: Outcome, principal: Principal = Depends(radiologist)) -> dict[str, Any]:
        return call(principal, "read outcome", read_id, lambda: store.add_outcome(read_id, body.kind, body.value, principal.user.name))

    return router
