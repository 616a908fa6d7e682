"""A DICOM node (pynetdicom): images arrive by C-STORE from a scanner or PACS, each is answered,
and the answer goes back to a destination as DICOM SR and SEG (and, when asked, a Secondary
Capture of the overlay) by C-STORE.

The storage handler only files what arrives (``incoming/``) and answers the sender at once; a
worker thread then predicts each image and writes its SR and SEG into ``outbox/``, and sends them;
with ``series_wait``, it holds a series' answers until no image of it has arrived for that long,
then writes them as the views of one nodule (``inference.nodules``).
``incoming/`` holds what has not been answered yet: an image leaves it once its results are in the
outbox, so a node that was stopped or killed answers on its next start what it had received (a
series held in memory is answered again from its files).
Nothing is lost and nothing stops the node: an object that is not ultrasound (a CT, an SR, a
presentation state) is answered "success" after one log line naming its SOP Instance UID and what
it is (so that the sender does not send it again forever) and is not kept; a data set that cannot
be parsed, or whose SOP Instance UID is not a valid UID, is refused with status 0xC000; an
ultrasound image that cannot be decoded is one log line and is moved to ``rejected/`` for a person
to look at. Results that could not be sent (the destination is down, refuses them) stay in
``outbox/`` and are sent again in the background with a growing pause (from ``RETRY_FIRST_S`` up
to ``RETRY_MAX_S``), with the next result, or by ``thyronet dicom-node --retry``; an aborted
association leaves nothing half-written (files are written atomically).

Names from the wire never reach the file system: every file is named by the SHA-256 of its SOP
Instance UID (the same object sent twice is one file). The folders are owner-only (0700, files
0600): they hold patient data. Logs name SOP Instance UIDs, never a patient's name or ID.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import UID
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Comprehensive3DSRStorage, SecondaryCaptureImageStorage, SegmentationStorage, Verification

from thyronet.apps.access import owner_only_folder
from thyronet.apps.dicom_out import write_dicom_results
from thyronet.data.dicom import ultrasound_refusal
from thyronet.data.imageio import read_image
from thyronet.errors import DataError, ThyronetError
from thyronet.inference.answers import Answer, predict_image
from thyronet.inference.backends import Backend
from thyronet.inference.nodules import NoduleAnswer
from thyronet.io import atomic_path

log = logging.getLogger(__name__)
SUCCESS, CANNOT_UNDERSTAND = 0x0000, 0xC000
RESULT_CLASSES = (Comprehensive3DSRStorage, SegmentationStorage, SecondaryCaptureImageStorage)  # what the node sends
# What the node accepts besides the uncompressed syntaxes: the compressed ones scanners and PACS
# send and the installed decoders read (pydicom with pylibjpeg, pyjpegls and openjpeg).
COMPRESSED_SYNTAXES = (pydicom.uid.JPEGBaseline8Bit, pydicom.uid.JPEGExtended12Bit, pydicom.uid.JPEGLSLossless,
                       pydicom.uid.JPEGLSNearLossless, pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEG2000,
                       pydicom.uid.RLELossless, pydicom.uid.DeflatedExplicitVRLittleEndian)
RETRY_FIRST_S, RETRY_MAX_S = 10.0, 600.0


def spool_name(uid: str) -> str:
    """The node's own name for an object: never the received UID itself, which could be a path."""
    return hashlib.sha256(uid.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``HOST:PORT:AET``."""
        host, port, title = (text.rsplit(":", 2) + ["", ""])[:3]
        if not host or not port.isdigit() or not title:
            raise ThyronetError(f"--send-to {text!r}: expected HOST:PORT:AET, e.g. 127.0.0.1:4242:ORTHANC")
        return cls(host, int(port), title)


class DicomNode:
    """Storage SCP and Verification SCP in front of one model, and a storage SCU to the destination."""

    def __init__(self, backend: Backend, folder: Path, ae_title: str = "THYRONET",
                 destination: Destination | None = None, secondary_capture: bool = False,
                 series_wait: float | None = None) -> None:
        self.backend, self.folder, self.destination = backend, Path(folder), destination
        self.secondary_capture = secondary_capture  # also send the overlay picture (dicom_out)
        # None: answer each image alone; else answer a series as one nodule once no image of it
        # has arrived for this many seconds (a series' images come one association after another)
        self.series_wait = series_wait
        self.series: dict[str, tuple[float, list[tuple[Path, Answer]]]] = {}  # series UID: (last arrival, views)
        self.incoming, self.outbox, self.rejected = (self.folder / name for name in ("incoming", "outbox", "rejected"))
        for folder in (self.folder, self.incoming, self.outbox, self.rejected):
            owner_only_folder(folder)
        self.ae = AE(ae_title=ae_title)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, [*context.transfer_syntax, *COMPRESSED_SYNTAXES])
        self.ae.add_supported_context(Verification)
        self.retry_pause, self.next_retry = RETRY_FIRST_S, 0.0  # background delivery of what waits in the outbox
        self.work: queue.Queue[Path | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="thyronet-dicom-worker", daemon=True)
        self.server = None

    # -- receiving ---------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        """File what arrives and answer the sender: success once it is safely on disk (or, for an
        object thyronet does not read, once that is logged); 0xC000 for what cannot be parsed."""
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            uid = str(dataset.SOPInstanceUID)
        except Exception as error:  # a data set pydicom cannot parse
            log.warning("C-STORE from %s: unreadable data set (%s); refused", event.assoc.requestor.ae_title,
                        error.__class__.__name__)
            return CANNOT_UNDERSTAND
        if not UID(uid).is_valid:
            log.warning("C-STORE from %s: SOP Instance UID %r is not a valid UID; refused",
                        event.assoc.requestor.ae_title, uid[:70])
            return CANNOT_UNDERSTAND
        try:
            refusal = ultrasound_refusal(dataset)
        except Exception as error:  # an attribute that fails to convert on access
            refusal = f"malformed header ({error.__class__.__name__})"
        if refusal:
            log.warning("SOP Instance %s: %s; not answered (success status, so the sender does not retry it)", uid, refusal)
            return SUCCESS
        path = self.incoming / f"{spool_name(uid)}.dcm"
        with atomic_path(path) as tmp:
            dataset.save_as(tmp, enforce_file_format=True)
        self.work.put(path)
        return SUCCESS

    def _on_echo(self, event) -> int:
        return SUCCESS

    def start(self, host: str, port: int) -> None:
        """Serve in the background (``stop`` ends it), after queueing what an earlier run of the node
        received and did not answer."""
        left = sorted(self.incoming.glob("*.dcm"), key=lambda path: path.stat().st_mtime)
        if left:
            log.info("%d image(s) received before and not answered yet: answering them first", len(left))
        for path in left:
            self.work.put(path)
        self.worker.start()
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_ABORTED, lambda event: log.warning("association from %s aborted; what it had sent "
                                                                "completely is kept", event.assoc.requestor.address))]
        self.server = self.ae.start_server((host, port), block=False, evt_handlers=handlers)
        log.info("thyronet DICOM node %s listening on %s:%d%s", self.ae.ae_title, host, port,
                 f", sending results to {self.destination.ae_title}@{self.destination.host}:{self.destination.port}"
                 if self.destination else "")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        self.work.put(None)
        self.worker.join(timeout=60)

    # -- answering ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                path = self.work.get(timeout=0.5)
            except queue.Empty:  # nothing new: look for series that are complete, and results that wait
                if self.series_wait is not None:
                    self._guarded("a series", self.answer_series)
                self._guarded("the outbox", self._retry_when_due)
                continue
            if path is None:  # stopping: what waits for its series is answered now
                self._guarded("the last series", self.answer_series, True)
                return
            self._guarded(f"SOP Instance {path.stem}", self.answer, path)
            if self.series_wait is not None:
                self._guarded("a series", self.answer_series)

    def _retry_when_due(self) -> None:
        """Send the outbox again once its pause is over; each failure doubles the pause (up to
        ``RETRY_MAX_S``), a success resets it."""
        if self.destination is None or time.monotonic() < self.next_retry or not any(self.outbox.glob("*.dcm")):
            return
        left = self.flush()
        self.retry_pause = RETRY_FIRST_S if left == 0 else min(self.retry_pause * 2, RETRY_MAX_S)
        self.next_retry = time.monotonic() + self.retry_pause
        if left:
            log.info("%d result(s) still waiting; next try in %.0f s", left, self.retry_pause)

    @staticmethod
    def _guarded(what: str, step, *args) -> None:
        try:
            step(*args)
        except Exception as error:  # a network or file error of any kind: logged, and the node goes on
            log.warning("%s: %s: %s", what, error.__class__.__name__, error)

    def answer(self, path: Path) -> list[Path]:
        """Predict one received image; alone, write its results to the outbox and send the outbox;
        by series, keep its answer until its series is complete (:meth:`answer_series`)."""
        if not path.exists():  # the same instance was sent twice and its first copy is answered
            log.info("spooled object %s: answered already", path.stem)
            return []
        uid = path.stem
        try:
            dataset = pydicom.dcmread(path, defer_size="1 KB")  # the header; pixel data stays on disk until decoded
            uid = str(dataset.SOPInstanceUID)
            answer = predict_image(self.backend, read_image(path), str(path))
        except DataError as error:
            self._reject(path, f"SOP Instance {uid}: {error.problem}")
            return []
        except Exception as error:  # the node keeps serving whatever one object does
            self._reject(path, f"SOP Instance {uid}: not answered ({error.__class__.__name__})")
            return []
        log.info("SOP Instance %s: P(malignant) %.3f, %s", uid, answer.prediction.probability, answer.prediction.decision)
        if self.series_wait is None:
            return self._deliver([(path, answer)])
        series = str(dataset.get("SeriesInstanceUID", uid))
        _, views = self.series.get(series, (0.0, []))
        self.series[series] = (time.monotonic(), [*views, (path, answer)])
        return []

    def answer_series(self, everything: bool = False) -> list[Path]:
        """Answer each series no image of which arrived for ``series_wait`` seconds (all of them
        with ``everything``) as one nodule, and send the results."""
        now, results = time.monotonic(), []
        for series, (last, _) in list(self.series.items()):
            if everything or now - last >= self.series_wait:
                results += self._deliver(self.series.pop(series)[1], series)
        return results

    def _deliver(self, views: list[tuple[Path, Answer]], series: str | None = None) -> list[Path]:
        """Write each view's results to the outbox (with the nodule's combined answer for a series),
        then send the outbox."""
        nodule = None
        if series is not None:
            nodule = NoduleAnswer.combine(self.backend, series, [answer for _, answer in views])
            log.info("series %s: one nodule from %d view(s): P(malignant) %.3f, %s", series, len(views),
                     nodule.probability, nodule.decision)
        results = []
        for path, answer in views:
            try:
                results += write_dicom_results(path, answer, self.outbox, self.backend.name, self.secondary_capture, nodule,
                                               name=path.stem)
            except Exception as error:  # the node keeps serving whatever one object does
                self._reject(path, f"spooled object {path.stem}: results not written ({error.__class__.__name__})")
                continue
            path.unlink(missing_ok=True)  # answered: its results are in the outbox
        log.info("%d result object(s) written", len(results))
        self.flush()  # network errors propagate to the worker loop, which logs them; the results stay in the outbox
        return results

    def _reject(self, path: Path, why: str) -> None:
        """Log why an object is not answered and move it out of ``incoming/``, so that a restart does
        not try it again."""
        path.replace(self.rejected / path.name)
        log.warning("%s; kept in %s", why, self.rejected)

    def flush(self) -> int:
        """Send every result in the outbox to the destination; those sent leave it. Returns how many remain."""
        pending = sorted(self.outbox.glob("*.dcm"))
        if not pending or self.destination is None:
            return len(pending)
        ae = AE(ae_title=self.ae.ae_title)
        for sop_class in RESULT_CLASSES:
            ae.add_requested_context(sop_class)
        target = self.destination
        try:
            assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
        except OSError as error:  # a host name that does not resolve, a refused socket
            log.warning("destination %s@%s:%d: %s: %d result(s) kept in %s", target.ae_title, target.host, target.port,
                        error.__class__.__name__, len(pending), self.outbox)
            return len(pending)
        if not assoc.is_established:
            log.warning("destination %s@%s:%d unreachable: %d result(s) kept in %s for --retry", target.ae_title,
                        target.host, target.port, len(pending), self.outbox)
            return len(pending)
        try:
            for path in pending:
                status = assoc.send_c_store(pydicom.dcmread(path))
                code = getattr(status, "Status", None)
                if code == SUCCESS:
                    path.unlink()
                else:
                    log.warning("%s: the destination answered C-STORE with status %s; kept for --retry", path.name,
                                "none" if code is None else f"0x{code:04X}")
        finally:
            assoc.release()
        return len(list(self.outbox.glob("*.dcm")))
