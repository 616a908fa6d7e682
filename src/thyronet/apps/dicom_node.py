"""A DICOM node (pynetdicom): images arrive by C-STORE from a scanner or PACS, each is answered,
and the answer goes back to each destination as DICOM SR and SEG (and, when asked, a Secondary
Capture of the overlay) by C-STORE.

With a peers file (:mod:`thyronet.apps.dicom_peers`) an association from a calling AE title or
address not listed there is rejected (A-ASSOCIATE-RJ, "calling AE title not recognised") before
anything is negotiated; with TLS files (:mod:`thyronet.apps.dicom_tls`) the node accepts TLS
associations only, and mutual TLS with a CA.

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
to look at. A result waits in ``outbox/<destination>/`` (a hard link for each destination, so
that one that is down holds back no other) and leaves it once that destination has taken it.
Results that could not be sent (the destination is down, refuses them) stay there and are sent
again in the background with a growing pause (from ``RETRY_FIRST_S`` up to ``RETRY_MAX_S``), with
the next result, or by ``thyronet dicom-node --retry``; an aborted association leaves nothing
half-written (files are written atomically).

Names from the wire never reach the file system: every file is named by the SHA-256 of its SOP
Instance UID (the same object sent twice is one file). The folders are owner-only (0700, files
0600): they hold patient data. Logs name SOP Instance UIDs, never a patient's name or ID.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.uid import UID
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from thyronet.apps.access import owner_only_folder
from thyronet.apps.dicom_out import write_dicom_results
from thyronet.apps.dicom_peers import Destination, Peers
from thyronet.apps.dicom_send import SUCCESS, send_waiting
from thyronet.apps.dicom_tls import TlsFiles
from thyronet.data.dicom import ultrasound_refusal
from thyronet.data.imageio import read_image
from thyronet.data.refusals import Tally
from thyronet.errors import DataError
from thyronet.inference.answers import Answer, predict_image
from thyronet.inference.backends import Backend
from thyronet.inference.nodules import NoduleAnswer
from thyronet.io import atomic_path

log = logging.getLogger(__name__)
CANNOT_UNDERSTAND = 0xC000  # a C-STORE status: the node cannot take this object
# A-ASSOCIATE-RJ for a peer not on the list: rejected permanent, by the service user, calling AE
# title not recognised (PS3.8 9.3.4; DICOM has no code for "host not allowed")
REJECT_UNKNOWN_PEER = (0x01, 0x01, 0x03)
# What the node accepts besides the uncompressed syntaxes: the compressed ones scanners and PACS
# send and the installed decoders read (pydicom with Pillow, pyjpegls and GDCM; 12-bit JPEG
# Extended samples decode with none of them and are one log line each)
COMPRESSED_SYNTAXES = (pydicom.uid.JPEGBaseline8Bit, pydicom.uid.JPEGExtended12Bit, pydicom.uid.JPEGLossless,
                       pydicom.uid.JPEGLosslessSV1, pydicom.uid.JPEGLSLossless,
                       pydicom.uid.JPEGLSNearLossless, pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEG2000,
                       pydicom.uid.RLELossless, pydicom.uid.DeflatedExplicitVRLittleEndian)
RETRY_FIRST_S, RETRY_MAX_S = 10.0, 600.0


def spool_name(uid: str) -> str:
    """The node's own name for an object: never the received UID itself, which could be a path."""
    return hashlib.sha256(uid.encode()).hexdigest()[:40]


class DicomNode:
    """Storage SCP and Verification SCP in front of one model, and a storage SCU to the destinations.

    ``peers``: the allow-list (an association from anyone else is rejected); ``tls``: TLS for the
    associations it accepts and, towards a destination marked ``tls``, for those it requests.
    """

    def __init__(self, backend: Backend, folder: Path, ae_title: str = "THYRONET",
                 destinations: Sequence[Destination] = (), secondary_capture: bool = False,
                 series_wait: float | None = None, peers: Peers | None = None, tls: TlsFiles | None = None,
                 keep_rejected_days: float | None = None) -> None:
        self.backend, self.folder, self.destinations = backend, Path(folder), tuple(destinations)
        self.peers, self.tls = peers, tls
        # None: what could not be answered stays in rejected/ until a person deletes it
        self.keep_rejected_days, self.next_prune = keep_rejected_days, 0.0
        self.server_context = tls.server() if tls else None  # built now: a bad certificate stops the node at once
        self.secondary_capture = secondary_capture  # also send the overlay picture (dicom_out)
        # None: answer each image alone; else answer a series as one nodule once no image of it
        # has arrived for this many seconds (a series' images come one association after another)
        self.series_wait = series_wait
        self.series: dict[str, tuple[float, list[tuple[Path, Answer]]]] = {}  # series UID: (last arrival, views)
        self.incoming, self.outbox, self.rejected = (self.folder / name for name in ("incoming", "outbox", "rejected"))
        for folder in (self.folder, self.incoming, self.outbox, self.rejected,
                       *(self.outbox / destination.folder_name for destination in self.destinations)):
            owner_only_folder(folder)
        self.ae = AE(ae_title=ae_title)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, [*context.transfer_syntax, *COMPRESSED_SYNTAXES])
        self.ae.add_supported_context(Verification)
        self.arrivals: dict[object, Tally] = {}  # association: what its C-STOREs were
        self.arrivals_lock = threading.Lock()  # each association is served by a thread of its own
        self.retry_pause, self.next_retry = RETRY_FIRST_S, 0.0  # background delivery of what waits in the outbox
        self.work: queue.Queue[Path | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="thyronet-dicom-worker", daemon=True)
        self.server = None

    # -- receiving ---------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        """Answer a C-STORE (:meth:`_store`) and count it for its association's closing line."""
        status, problem = self._store(event)
        with self.arrivals_lock:
            self.arrivals.setdefault(event.assoc, Tally()).add(problem)
        return status

    def _store(self, event) -> tuple[int, str | None]:
        """File what arrives and answer the sender: success once it is safely on disk (or, for an
        object thyronet does not read, once that is logged); 0xC000 for what cannot be parsed.
        Returns the status and why the object is not answered (None when it is kept)."""
        try:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            uid = str(dataset.SOPInstanceUID)
        except Exception as error:  # a data set pydicom cannot parse
            log.warning("C-STORE from %s: unreadable data set (%s); refused", event.assoc.requestor.ae_title,
                        error.__class__.__name__)
            return CANNOT_UNDERSTAND, "unreadable data set"
        if not UID(uid).is_valid:
            log.warning("C-STORE from %s: SOP Instance UID %r is not a valid UID; refused",
                        event.assoc.requestor.ae_title, uid[:70])
            return CANNOT_UNDERSTAND, "SOP Instance UID is not a valid UID"
        try:
            refusal = ultrasound_refusal(dataset)
        except Exception as error:  # an attribute that fails to convert on access
            refusal = f"malformed header ({error.__class__.__name__})"
        if refusal:
            log.warning("SOP Instance %s: %s; not answered (success status, so the sender does not retry it)", uid, refusal)
            return SUCCESS, refusal
        path = self.incoming / f"{spool_name(uid)}.dcm"
        with atomic_path(path) as tmp:
            dataset.save_as(tmp, enforce_file_format=True)
        self.work.put(path)
        return SUCCESS, None

    def _on_ended(self, event, aborted: bool) -> None:
        """One line per association that stored anything, or was aborted: how many objects were kept
        for answering and how many were not, by reason."""
        with self.arrivals_lock:
            tally = self.arrivals.pop(event.assoc, None)
        if tally is None and not aborted:
            return
        requestor = event.assoc.requestor
        how = "aborted; what it had sent completely is kept" if aborted else "released"
        log.log(logging.WARNING if aborted else logging.INFO, "association from %s at %s %s: %s", requestor.ae_title,
                requestor.address, how, (tally or Tally()).line(answered="kept for answering"))

    def _on_echo(self, event) -> int:
        return SUCCESS

    def _on_requested(self, event) -> None:
        """Reject an association whose calling AE title or address is not in the peers file, before
        anything is negotiated."""
        requestor = event.assoc.requestor
        why = self.peers.refusal(requestor.primitive.calling_ae_title, requestor.address)
        if why:
            log.warning("association from %s rejected: %s", requestor.address, why)
            event.assoc.acse.send_reject(*REJECT_UNKNOWN_PEER)
            event.assoc.kill()

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
                    (evt.EVT_RELEASED, lambda event: self._on_ended(event, aborted=False)),
                    (evt.EVT_ABORTED, lambda event: self._on_ended(event, aborted=True))]
        if self.peers is not None:
            handlers.append((evt.EVT_REQUESTED, self._on_requested))
        else:
            log.warning("no peers file: associations from any AE title and address are accepted")
        self.server = self.ae.start_server((host, port), block=False, evt_handlers=handlers,
                                           ssl_context=self.server_context)
        log.info("thyronet DICOM node %s listening on %s:%d%s%s", self.ae.ae_title, host, port,
                 " (TLS)" if self.tls else "",
                 f", sending results to {', '.join(map(str, self.destinations))}" if self.destinations else "")

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
                self._guarded("rejected/", self._prune_when_due)
                continue
            if path is None:  # stopping: what waits for its series is answered now
                self._guarded("the last series", self.answer_series, True)
                self._guarded("rejected/", self._prune_when_due)
                return
            self._guarded(f"SOP Instance {path.stem}", self.answer, path)
            if self.series_wait is not None:
                self._guarded("a series", self.answer_series)

    def _prune_when_due(self) -> None:
        """Delete what has been in ``rejected/`` longer than ``keep_rejected_days`` (looked at once
        a minute): patient data kept no longer than the rule says."""
        if self.keep_rejected_days is None or time.monotonic() < self.next_prune:
            return
        self.next_prune = time.monotonic() + 60
        oldest = time.time() - self.keep_rejected_days * 86400
        expired = [path for path in self.rejected.glob("*.dcm") if path.stat().st_mtime < oldest]
        for path in expired:
            path.unlink(missing_ok=True)
        if expired:
            log.info("%d object(s) in %s older than %g day(s) deleted", len(expired), self.rejected, self.keep_rejected_days)

    def _retry_when_due(self) -> None:
        """Send the outbox again once its pause is over; each failure doubles the pause (up to
        ``RETRY_MAX_S``), a success resets it."""
        if not self.destinations or time.monotonic() < self.next_retry or not any(self.outbox.rglob("*.dcm")):
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
        """Send every result in the outbox to each destination; those sent leave it. Returns how many
        (result, destination) deliveries remain (without destinations, how many results wait)."""
        self._route()
        if not self.destinations:
            return len(list(self.outbox.rglob("*.dcm")))
        return sum(self._send(destination) for destination in self.destinations)

    def _route(self) -> None:
        """Give each destination its own copy of every new result (a hard link in its outbox
        subfolder), so that a destination that is down does not hold back another. What waits for
        a destination no longer configured (the PACS moved) goes to the current ones."""
        if not self.destinations:
            return
        current = {destination.folder_name for destination in self.destinations}
        for folder in [entry for entry in self.outbox.iterdir() if entry.is_dir() and entry.name not in current]:
            waiting = list(folder.glob("*.dcm"))
            for path in waiting:
                path.replace(self.outbox / path.name)
            if waiting:
                log.info("%d result(s) waiting for %s, no longer a destination, go to the current destination(s)",
                         len(waiting), folder.name)
        for path in sorted(self.outbox.glob("*.dcm")):
            for destination in self.destinations:
                copy = self.outbox / destination.folder_name / path.name
                if not copy.exists():
                    os.link(path, copy)
            path.unlink()

    def _send(self, target: Destination) -> int:
        """C-STORE the results waiting for ``target``; returns how many remain."""
        return send_waiting(self.outbox / target.folder_name, target, self.ae.ae_title, self.tls)
