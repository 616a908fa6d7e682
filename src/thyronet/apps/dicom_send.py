"""Sending results to a PACS: the DICOM objects waiting in a folder, C-STOREd to one destination
(pynetdicom, TLS where the destination asks for it); what is stored leaves the folder, what is not
waits for the next try. The DICOM node's outbox and the reading store's signed reports use it."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import Comprehensive3DSRStorage, SecondaryCaptureImageStorage, SegmentationStorage

from thyronet.apps.dicom_peers import Destination
from thyronet.apps.dicom_tls import TlsFiles, client_context

log = logging.getLogger(__name__)
RESULT_CLASSES = (Comprehensive3DSRStorage, SegmentationStorage, SecondaryCaptureImageStorage)  # what thyronet sends
SUCCESS = 0x0000


def send_waiting(folder: Path, target: Destination, calling_ae_title: str, tls: TlsFiles | None = None) -> int:
    """C-STORE every ``*.dcm`` in ``folder`` to ``target``; those stored are removed. Returns how
    many remain (all of them when the destination cannot be reached)."""
    pending = sorted(folder.glob("*.dcm"))
    if not pending:
        return 0
    ae = AE(ae_title=calling_ae_title)
    for sop_class in RESULT_CLASSES:
        ae.add_requested_context(sop_class)
    context = (client_context(tls), target.host) if target.tls else None
    try:
        assoc = ae.associate(target.host, target.port, ae_title=target.ae_title, tls_args=context)
    except OSError as error:  # a host name that does not resolve, a refused socket, a failed TLS handshake
        log.warning("destination %s: %s: %d result(s) kept in %s", target, error.__class__.__name__, len(pending), folder)
        return len(pending)
    if not assoc.is_established:
        log.warning("destination %s unreachable or refused the association: %d result(s) kept in %s for --retry",
                    target, len(pending), folder)
        return len(pending)
    try:
        for path in pending:
            status = assoc.send_c_store(pydicom.dcmread(path))
            code = getattr(status, "Status", None)
            if code == SUCCESS:
                path.unlink()
            else:
                log.warning("%s: %s answered C-STORE with status %s; kept for --retry", path.name, target,
                            "none" if code is None else f"0x{code:04X}")
    finally:
        assoc.release()
    return len(list(folder.glob("*.dcm")))
