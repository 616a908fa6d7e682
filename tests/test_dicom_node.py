"""The DICOM node end to end: DCMTK's storescu as the scanner, a real Orthanc on loopback as the
PACS; the SR and SEG must arrive in Orthanc, and bad objects or a PACS that is down lose nothing."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from pacs import free_port, instances, modalities, wait_until
from synthetic import make_us_dicom

ORTHANC, STORESCU, ECHOSCU = shutil.which("Orthanc"), shutil.which("storescu"), shutil.which("echoscu")
THYRONET = shutil.which("thyronet", path=str(Path(sys.executable).parent)) or shutil.which("thyronet")
needs_pacs = pytest.mark.skipif(not (ORTHANC and STORESCU and ECHOSCU and THYRONET),
                                reason="Debian's orthanc and dcmtk (and the thyronet console script) are not installed")


def start_node(model: Path, folder: Path, port: int, send_to: str | None, *options: str) -> subprocess.Popen:
    """The node as an administrator starts it; ``send_to`` None: the destinations are in ``options``' peers file."""
    destination = ["--send-to", send_to] if send_to else []
    node = subprocess.Popen([THYRONET, "dicom-node", str(model), "--port", str(port), *destination,
                             "--folder", str(folder), *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    node.lines = []  # what it has logged so far, read as it comes
    threading.Thread(target=lambda: node.lines.extend(node.stdout), daemon=True).start()
    echo = lambda: subprocess.run([ECHOSCU, "-aec", "THYRONET", "127.0.0.1", str(port)], capture_output=True).returncode == 0  # noqa: E731
    if not wait_until(echo, 120):
        pytest.fail(f"the node did not answer C-ECHO: {stop(node)[-3000:]}")
    return node


def stop(node: subprocess.Popen) -> str:
    node.terminate()
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()
    time.sleep(0.5)  # the reader thread takes the last lines
    return "".join(node.lines)


def store(path: Path, port: int) -> None:
    subprocess.run([STORESCU, "-aec", "THYRONET", "127.0.0.1", str(port), str(path)], check=True, capture_output=True)


def no_pixels(path: Path) -> Path:
    """A non-image object (a text SR) that a node must accept and leave unanswered."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BasicTextSRStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = BasicTextSRStorage, meta.MediaStorageSOPInstanceUID, "SR"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "X", generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def abort_association(port: int) -> None:
    """A sender that opens an association and aborts it (A-ABORT), as a scanner switched off would."""
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="THYRONET")
    assert assoc.is_established
    assoc.abort()


@needs_pacs
def test_images_in_by_c_store_answers_out_as_sr_and_seg(region_run, orthanc, tmp_path):
    base, pacs_port = orthanc
    port = free_port()
    node = start_node(region_run, tmp_path / "node", port, f"127.0.0.1:{pacs_port}:ORTHANC", "--secondary-capture",
                      "--per-series", "1")
    try:
        store(no_pixels(tmp_path / "text.dcm"), port)  # accepted, logged, not answered
        abort_association(port)  # logged; the node goes on serving
        study, series = generate_uid(), generate_uid()  # two views of one nodule, sent one association each
        for view in ("a", "b"):
            store(make_us_dicom(tmp_path / f"{view}.dcm", study_uid=study, series_uid=series), port)
        arrived = wait_until(lambda: (m := modalities(base)) and len(m) >= 6 and m, 120)
    finally:
        log = stop(node)
    assert arrived == ["OT", "OT", "SEG", "SEG", "SR", "SR"], log  # per view: the overlay, the SEG and the SR
    findings = [hd.sr.Comprehensive3DSR.from_dataset(dataset).content.get_planar_roi_measurement_groups()[0]
                for dataset in instances(base, "SR")]
    assert findings[0].tracking_uid == findings[1].tracking_uid, log  # one nodule: the same finding in both SRs
    assert f"series {series}: one nodule from 2 view(s)" in log
    assert "Basic Text SR Storage, modality SR: thyronet reads ultrasound only" in log and "aborted" in log
    assert "Traceback" not in log
    assert not list((tmp_path / "node" / "outbox").rglob("*.dcm"))  # everything sent


@needs_pacs
def test_results_wait_in_the_outbox_while_the_pacs_is_down(region_run, orthanc, tmp_path):
    base, pacs_port = orthanc
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    node = start_node(region_run, tmp_path / "node", port, f"127.0.0.1:{dead}:ORTHANC")
    try:
        store(make_us_dicom(tmp_path / "us.dcm"), port)
        outbox = tmp_path / "node" / "outbox"
        kept = wait_until(lambda: len(list(outbox.rglob("*.dcm"))) == 2 and any("unreachable" in line for line in node.lines), 120)
    finally:
        log = stop(node)
    assert kept, log
    assert "unreachable" in log and "Traceback" not in log
    done = subprocess.run([THYRONET, "dicom-node", str(region_run), "--folder", str(tmp_path / "node"), "--retry",
                           "--send-to", f"127.0.0.1:{pacs_port}:ORTHANC"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "everything sent" in done.stdout, done.stdout + done.stderr
    assert wait_until(lambda: modalities(base) == ["SEG", "SR"], 30)


def test_a_restarted_node_answers_what_it_had_received(region_run, tmp_path):
    """What a stopped or killed node left in incoming/ is answered on its next start; what cannot
    be answered goes to rejected/, so that nothing is tried forever and nothing is lost."""
    from thyronet.apps.dicom_node import DicomNode
    from thyronet.inference.backends import load_backend

    incoming = tmp_path / "node" / "incoming"
    incoming.mkdir(parents=True)
    image = make_us_dicom(incoming / "1.2.3.dcm")
    text = no_pixels(incoming / "1.2.4.dcm")
    node = DicomNode(load_backend(region_run), tmp_path / "node")
    node.start("127.0.0.1", free_port())
    node.stop()  # the worker answers what is queued before it stops
    assert not image.exists() and not list(incoming.iterdir())
    assert sorted(pydicom.dcmread(path).Modality for path in node.outbox.glob("*.dcm")) == ["SEG", "SR"]
    assert [path.name for path in node.rejected.iterdir()] == [text.name]


def _send(port: int, *datasets: pydicom.Dataset, transfer_syntax=ExplicitVRLittleEndian) -> list[int]:
    """C-STORE each data set in one association; the statuses the node answered."""
    ae = AE(ae_title="SCANNER")
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="THYRONET")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(dataset).Status) for dataset in datasets]
    finally:
        assoc.release()


def test_a_name_from_the_wire_never_reaches_the_file_system_and_only_ultrasound_is_answered(tiny_run, tmp_path, caplog):
    """A hostile SOP Instance UID is refused and writes nothing anywhere; a CT is answered success
    after a log line and kept nowhere; an ultrasound image is spooled under the node's own name."""
    import logging

    from thyronet.apps.dicom_node import CANNOT_UNDERSTAND, SUCCESS, DicomNode, spool_name
    from thyronet.inference.backends import load_backend

    node = DicomNode(load_backend(tiny_run), tmp_path / "node")
    port = free_port()
    traversal = pydicom.dcmread(make_us_dicom(tmp_path / "t.dcm"))
    with pydicom.config.disable_value_validation():
        traversal.SOPInstanceUID = "../../../../elsewhere/TRAVERSAL"
    ct = pydicom.dcmread(make_us_dicom(tmp_path / "ct.dcm"))
    ct.SOPClassUID, ct.Modality = pydicom.uid.CTImageStorage, "CT"
    good = pydicom.dcmread(make_us_dicom(tmp_path / "us.dcm"))
    good.PatientName, good.PatientID = "DOE^JANE", "MRN0012345"
    with caplog.at_level(logging.INFO, logger="thyronet"):
        node.start("127.0.0.1", port)
        try:
            assert _send(port, traversal, ct, good) == [CANNOT_UNDERSTAND, SUCCESS, SUCCESS]
        finally:
            node.stop()
    assert not list(tmp_path.parent.rglob("*TRAVERSAL*")) and not (tmp_path / "elsewhere").exists()
    assert "CT Image Storage, modality CT: thyronet reads ultrasound only" in caplog.text
    assert ("association from SCANNER at 127.0.0.1 released: 1 kept for answering, 2 refused (1 invalid UID, "
            "1 not ultrasound)") in caplog.text
    assert "DOE" not in caplog.text and "MRN0012345" not in caplog.text
    written = [p.name for p in node.outbox.iterdir()]
    assert written == [f"{spool_name(good.SOPInstanceUID)}.sr.dcm"]  # the whole-frame model outlines nothing: no SEG
    assert good.SOPInstanceUID not in " ".join(written)  # named by the node, not by the sender
    for folder in (node.folder, node.incoming, node.outbox, node.rejected):
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in node.outbox.iterdir())


@pytest.mark.parametrize("syntax", [pydicom.uid.JPEGBaseline8Bit, pydicom.uid.RLELossless, pydicom.uid.JPEGLSLossless])
def test_compressed_transfer_syntaxes_are_accepted_and_answered(tiny_run, tmp_path, syntax):
    from thyronet.apps.dicom_node import SUCCESS, DicomNode
    from thyronet.inference.backends import load_backend

    dataset = pydicom.dcmread(make_us_dicom(tmp_path / "us.dcm"))
    if syntax == pydicom.uid.JPEGBaseline8Bit:  # pydicom decodes it but does not encode it: Pillow does
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(dataset.pixel_array).save(buffer, format="JPEG", quality=95)
        dataset.PixelData = pydicom.encaps.encapsulate([buffer.getvalue()])
        dataset["PixelData"].VR = "OB"
        dataset.file_meta.TransferSyntaxUID = syntax
    else:
        dataset.compress(syntax)
    node = DicomNode(load_backend(tiny_run), tmp_path / "node")
    port = free_port()
    node.start("127.0.0.1", port)
    try:
        assert _send(port, dataset, transfer_syntax=syntax) == [SUCCESS]
    finally:
        node.stop()
    assert [pydicom.dcmread(p).Modality for p in node.outbox.glob("*.dcm")] == ["SR"] and not list(node.rejected.iterdir())


def test_a_jpeg_lossless_ultrasound_image_over_the_network_is_answered(tiny_run, tmp_path):
    """pydicom's JPEG Lossless (process 14, selection value 1) ultrasound frame, as a PACS stores it."""
    from pydicom.data import get_testdata_file

    from thyronet.apps.dicom_node import SUCCESS, DicomNode
    from thyronet.inference.backends import load_backend

    dataset = pydicom.dcmread(get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    assert dataset.Modality == "US" and dataset.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    node = DicomNode(load_backend(tiny_run), tmp_path / "node")
    port = free_port()
    node.start("127.0.0.1", port)
    try:
        assert _send(port, dataset, transfer_syntax=pydicom.uid.JPEGLosslessSV1) == [SUCCESS]
    finally:
        node.stop()
    assert [pydicom.dcmread(p).Modality for p in node.outbox.glob("*.dcm")] == ["SR"] and not list(node.rejected.iterdir())


def test_what_could_not_be_answered_is_deleted_after_the_retention_period(tiny_run, tmp_path):
    from thyronet.apps.dicom_node import DicomNode
    from thyronet.inference.backends import load_backend

    rejected = tmp_path / "node" / "rejected"
    rejected.mkdir(parents=True)
    old, recent = make_us_dicom(rejected / "old.dcm"), make_us_dicom(rejected / "recent.dcm")
    three_days_ago = time.time() - 3 * 86400
    os.utime(old, (three_days_ago, three_days_ago))
    node = DicomNode(load_backend(tiny_run), tmp_path / "node", keep_rejected_days=2)
    node.start("127.0.0.1", free_port())
    node.stop()
    assert not old.exists() and recent.exists()


def test_retry_towards_a_host_that_does_not_exist_is_one_line(tiny_run, tmp_path):
    outbox = tmp_path / "node" / "outbox"
    outbox.mkdir(parents=True)
    make_us_dicom(outbox / "waiting.sr.dcm")  # a result that waits for its destination
    result = subprocess.run([THYRONET or "thyronet", "dicom-node", str(tiny_run), "--folder", str(tmp_path / "node"),
                             "--retry", "--send-to", "no-such-host.invalid:104:PACS"], capture_output=True, text=True,
                            timeout=120)
    assert "Traceback" not in result.stderr + result.stdout and result.returncode == 1
    assert "1 result(s) not sent" in result.stdout and "no-such-host.invalid" in result.stderr


def _associate(port: int, calling: str, tls_args=None):
    """An association from ``calling`` carrying C-STORE of an ultrasound image; the caller releases it."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(pydicom.uid.UltrasoundImageStorage, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title="THYRONET", tls_args=tls_args)


def test_only_the_peers_listed_may_associate(tiny_run, tmp_path, caplog):
    """The allow-list: a listed AE title from a listed address is accepted; an unknown AE title,
    or a listed one from another address, is rejected at association (A-ASSOCIATE-RJ, calling AE
    title not recognised), by pynetdicom's SCU and by DCMTK's storescu alike."""
    import logging

    from thyronet.apps.dicom_node import SUCCESS, DicomNode
    from thyronet.apps.dicom_peers import load_peers
    from thyronet.inference.backends import load_backend

    peers = tmp_path / "peers.yaml"
    peers.write_text("peers:\n  - {ae_title: SCANNER, hosts: [127.0.0.1]}\n  - {ae_title: STORESCU, hosts: [127.0.0.0/8]}\n"
                     "  - {ae_title: ELSEWHERE, hosts: [10.1.2.0/24]}\n")
    node = DicomNode(load_backend(tiny_run), tmp_path / "node", peers=load_peers(peers))
    port = free_port()
    image = make_us_dicom(tmp_path / "us.dcm")
    with caplog.at_level(logging.INFO, logger="thyronet"):
        node.start("127.0.0.1", port)
        try:
            accepted = _associate(port, "SCANNER")
            assert accepted.is_established
            assert accepted.send_c_store(pydicom.dcmread(image)).Status == SUCCESS
            accepted.release()
            for calling in ("INTRUDER", "ELSEWHERE"):
                rejected = _associate(port, calling)
                assert rejected.is_rejected and not rejected.is_established
                answer = rejected.acceptor.primitive
                assert (answer.result, answer.result_source, answer.diagnostic) == (0x01, 0x01, 0x03)
            if STORESCU:
                assert subprocess.run([STORESCU, "-aet", "INTRUDER", "-aec", "THYRONET", "127.0.0.1", str(port), str(image)],
                                      capture_output=True).returncode != 0
                subprocess.run([STORESCU, "-aec", "THYRONET", "127.0.0.1", str(port), str(image)], check=True,
                               capture_output=True)
        finally:
            node.stop()
    assert "calling AE title 'INTRUDER' is not in the peers file" in caplog.text
    assert "calling AE title 'ELSEWHERE' is not allowed from 127.0.0.1" in caplog.text
    assert len(list(node.outbox.glob("*.sr.dcm"))) == 1  # the same image twice (SCANNER, then STORESCU): one result


@pytest.mark.parametrize(("text", "problem"), [
    ("peers:\n  - {ae_title: PACS, hosts: [pacs.local]}\n", "peers[0]: 'pacs.local' is not an IP address or network"),
    ("peers:\n  - {ae_title: A-TITLE-LONGER-THAN-16}\n", "peers[0]: AE title 'A-TITLE-LONGER-THAN-16' is not valid"),
    ("peers: []\n", "'peers' lists nobody"),
    ("peers:\n  - {ae_title: PACS}\ndestinations:\n  - {host: 10.0.0.5, port: http, ae_title: PACS}\n",
     "destinations[0]: 'port' must be a number from 1 to 65535"),
    ("peers:\n  - {ae_title: PACS, host: 10.0.0.5}\n", "peers[0]: unknown key(s) host"),
    ("peers: [unclosed\n", "not valid YAML"),
])
def test_a_bad_peers_file_is_one_line_naming_it(tiny_run, tmp_path, capsys, text, problem):
    from thyronet.apps.cli import main

    peers = tmp_path / "peers.yaml"
    peers.write_text(text)
    assert main(["dicom-node", str(tiny_run), "--folder", str(tmp_path / "node"), "--peers", str(peers)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"thyronet dicom-node: error: {peers}: ") and problem in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(("files", "problem"), [
    (("cert",), "TLS needs --tls-cert and --tls-key together"),
    (("missing", "key"), "missing.crt: no such file"),
    (("cert", "client_key"), "do not load as a PEM pair"),
])
def test_a_bad_tls_option_is_one_line(tiny_run, tmp_path, capsys, files, problem):
    from certificates import make_certificates
    from thyronet.apps.cli import main

    pki = {**make_certificates(tmp_path / "pki"), "missing": tmp_path / "missing.crt"}
    options = [value for flag, name in zip(("--tls-cert", "--tls-key"), files, strict=False) for value in (flag, str(pki[name]))]
    assert main(["dicom-node", str(tiny_run), "--folder", str(tmp_path / "node"), *options]) == 2
    error = capsys.readouterr().err
    assert error.startswith("thyronet dicom-node: error: ") and problem in error and len(error.splitlines()) == 1


@needs_pacs
def test_every_destination_of_the_peers_file_gets_the_results_and_one_down_holds_back_no_other(region_run, orthanc,
                                                                                               tmp_path):
    base, pacs_port = orthanc
    port, dead = free_port(), free_port()
    peers = tmp_path / "peers.yaml"
    peers.write_text(f"peers:\n  - {{ae_title: STORESCU, hosts: [127.0.0.1]}}\n  - {{ae_title: ECHOSCU, hosts: [127.0.0.1]}}\n"
                     f"destinations:\n  - {{host: 127.0.0.1, port: {pacs_port}, ae_title: ORTHANC}}\n"
                     f"  - {{host: 127.0.0.1, port: {dead}, ae_title: DOWN}}\n")
    node = start_node(region_run, tmp_path / "node", port, None, "--peers", str(peers))
    try:
        store(make_us_dicom(tmp_path / "us.dcm"), port)
        arrived = wait_until(lambda: modalities(base) == ["SEG", "SR"], 120)
        waiting = tmp_path / "node" / "outbox" / f"DOWN@127.0.0.1_{dead}"
        kept = wait_until(lambda: len(list(waiting.glob("*.dcm"))) == 2, 60)
    finally:
        log = stop(node)
    assert arrived and kept, log
    assert not list((tmp_path / "node" / "outbox" / f"ORTHANC@127.0.0.1_{pacs_port}").glob("*.dcm"))
    assert "Traceback" not in log


needs_dcmtk = pytest.mark.skipif(not (STORESCU and shutil.which("storescp")), reason="DCMTK is not installed")


@needs_dcmtk
def test_tls_associations_in_and_out_with_mutual_certificates(tiny_run, tmp_path, caplog):
    """Mutual TLS: DCMTK's storescu with a certificate from the node's CA stores an image; a plain
    association, a TLS one without a certificate and one with a stranger's certificate get nowhere;
    the result goes out over TLS to DCMTK's storescp, which requires the node's certificate."""
    import logging
    import ssl

    from certificates import make_certificates
    from thyronet.apps.dicom_node import DicomNode
    from thyronet.apps.dicom_peers import Destination
    from thyronet.apps.dicom_tls import TlsFiles
    from thyronet.inference.backends import load_backend

    pki, stranger = make_certificates(tmp_path / "pki"), make_certificates(tmp_path / "stranger")
    received, pacs_port, port = tmp_path / "received", free_port(), free_port()
    received.mkdir()
    pacs = subprocess.Popen([shutil.which("storescp"), "+tls", str(pki["key"]), str(pki["cert"]), "+cf", str(pki["ca"]),
                             "-aet", "PACS", "-od", str(received), str(pacs_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    node = DicomNode(load_backend(tiny_run), tmp_path / "node", destinations=[Destination("127.0.0.1", pacs_port, "PACS", tls=True)],
                     tls=TlsFiles(pki["cert"], pki["key"], pki["ca"]))
    image = make_us_dicom(tmp_path / "us.dcm")
    tls_store = [STORESCU, "+tls", str(pki["client_key"]), str(pki["client_cert"]), "+cf", str(pki["ca"]), "-aec", "THYRONET",
                 "127.0.0.1", str(port), str(image)]
    with caplog.at_level(logging.INFO, logger="thyronet"):
        node.start("127.0.0.1", port)
        try:
            assert not _associate(port, "PLAIN").is_established  # no TLS: the handshake fails, nothing is negotiated
            anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
            assert not _associate(port, "ANONYMOUS", (anonymous, "localhost")).is_established
            foreign = ssl.create_default_context(cafile=str(pki["ca"]))
            foreign.load_cert_chain(str(stranger["client_cert"]), str(stranger["client_key"]))
            assert not _associate(port, "FOREIGN", (foreign, "localhost")).is_established
            done = subprocess.run(tls_store, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            arrived = wait_until(lambda: [pydicom.dcmread(path).Modality for path in received.iterdir()], 60)
        finally:
            node.stop()
            pacs.terminate()
            pacs.wait(timeout=30)
    assert arrived == ["SR"], caplog.text  # the whole-frame model outlines nothing: an SR and no SEG
    assert not list(node.outbox.rglob("*.dcm")) and "(TLS)" in caplog.text
