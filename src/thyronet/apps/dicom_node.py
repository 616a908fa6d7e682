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
Nothing is lost and nothing stops the node: an object without pixels, of a non-image SOP class,
or that cannot be decoded is one log line naming its SOP Instance UID and the reason, and is moved
to ``rejected/`` for a person to look at; results that
could not be sent (the destination is down, refuses them) stay in ``outbox/`` and are sent again
with the next result, or by ``thyronet dicom-node --retry``; an aborted association leaves
nothing half-written (files are written atomically).
"""

from __future__ import annotations

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

from thyronet.apps.dicom_out import write_dicom_results
from thyronet.data.imageio import read_image
from thyronet.errors import DataError, ThyronetError
from thyronet.inference.answers import Answer, predict_image
from thyronet.inference.backends import Backend
from thyronet.inference.nodules import NoduleAnswer
from thyronet.io import atomic_path

log = logging.getLogger(__name__)
SUCCESS, PROCESSING_FAILURE = 0x0000, 0x0110
RESULT_CLASSES = (Comprehensive3DSRStorage, SegmentationStorage, SecondaryCaptureImageStorage)  # what the node sends


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
        for folder in (self.incoming, self.outbox, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        self.ae = AE(ae_title=ae_title)
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(Verification)
        self.work: queue.Queue[Path | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="thyronet-dicom-worker", daemon=True)
        self.server = None

    # -- receiving ---------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            uid = str(dataset.SOPInstanceUID)
        except Exception as error:  # a data set pydicom cannot parse
            log.warning("C-STORE from %s: unreadable data set (%s); refused", event.assoc.requestor.ae_title, error)
            return PROCESSING_FAILURE
        path = self.incoming / f"{uid}.dcm"
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
        timeout = None if self.series_wait is None else 0.5
        while True:
            try:
                path = self.work.get(timeout=timeout)
            except queue.Empty:  # nothing new: look for series that are complete
                self._guarded("a series", self.answer_series)
                continue
            if path is None:  # stopping: what waits for its series is answered now
                self._guarded("the last series", self.answer_series, True)
                return
            self._guarded(f"SOP Instance {path.stem}", self.answer, path)
            if self.series_wait is not None:
                self._guarded("a series", self.answer_series)

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
            log.info("SOP Instance %s: answered already", path.stem)
            return []
        try:
            dataset = pydicom.dcmread(path, defer_size="1 KB")  # the header; pixel data stays on disk until decoded
            uid = str(dataset.SOPInstanceUID)
            if "PixelData" not in dataset:
                raise DataError(path, f"SOP Instance {uid} ({UID(dataset.SOPClassUID).name}): no pixel data, nothing to answer")
            answer = predict_image(self.backend, read_image(path), str(path))
        except DataError as error:
            self._reject(path, error.problem if "SOP Instance" in error.problem else f"{path.stem}: {error.problem}")
            return []
        except Exception as error:  # the node keeps serving whatever one object does
            self._reject(path, f"SOP Instance {path.stem}: not answered ({error.__class__.__name__}: {error})")
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
                results += write_dicom_results(path, answer, self.outbox, self.backend.name, self.secondary_capture, nodule)
            except Exception as error:  # the node keeps serving whatever one object does
                self._reject(path, f"SOP Instance {path.stem}: not written ({error.__class__.__name__}: {error})")
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
        assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
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
