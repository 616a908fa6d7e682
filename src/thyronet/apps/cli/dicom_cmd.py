"""``thyronet dicom-node``: receive images by C-STORE, send back DICOM SR and SEG."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from thyronet.errors import ThyronetError


def _dicom_node(args: argparse.Namespace) -> int:
    from thyronet.apps.dicom_node import DicomNode
    from thyronet.apps.dicom_peers import Destination, check_ae_title, load_peers
    from thyronet.apps.dicom_tls import TlsFiles
    from thyronet.inference.backends import load_backend

    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_ca and not args.tls_cert):
        raise ThyronetError("TLS needs --tls-cert and --tls-key together (and --tls-ca only with them)")
    peers = load_peers(args.peers) if args.peers else None
    destinations = [*(peers.destinations if peers else ()), *(Destination.parse(text) for text in args.send_to or ())]
    tls = TlsFiles(Path(args.tls_cert), Path(args.tls_key), Path(args.tls_ca) if args.tls_ca else None) if args.tls_cert else None
    node = DicomNode(load_backend(args.model), Path(args.folder), check_ae_title(args.ae_title, "--ae-title"), destinations,
                     args.secondary_capture, args.per_series, peers, tls, args.keep_rejected_days)
    if args.retry:
        left = node.flush()
        print(f"outbox {node.outbox}: {left} result(s) not sent" if left else f"outbox {node.outbox}: everything sent")
        return 0 if left == 0 else 1
    node.start(args.host, args.port)
    print(f"thyronet DICOM node {args.ae_title} on {args.host}:{args.port}; Ctrl-C stops it")
    try:
        while True:
            time.sleep(1)
    finally:
        node.stop()


def register(subcommands: argparse._SubParsersAction) -> None:
    node = subcommands.add_parser("dicom-node", help="a DICOM node: C-STORE in, answers out as DICOM SR and SEG")
    node.add_argument("model", help="a run folder, CV folder, package or checkpoint")
    node.add_argument("--ae-title", default="THYRONET")
    node.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    node.add_argument("--port", type=int, default=11112)
    node.add_argument("--send-to", metavar="HOST:PORT:AET", action="append", help="where the SR and SEG go (a PACS; "
                      "again for more, besides the peers file's destinations); without any they stay in the outbox")
    node.add_argument("--peers", metavar="YAML", help="the calling AE titles and addresses allowed to associate (any other "
                      "is rejected) and the destinations of the results (see docs/dicom-conformance.md)")
    node.add_argument("--tls-cert", metavar="PEM", help="TLS: the node's certificate; with --tls-key, every association "
                      "it accepts is TLS, and so are those to destinations marked tls in the peers file")
    node.add_argument("--tls-key", metavar="PEM", help="TLS: the certificate's private key")
    node.add_argument("--tls-ca", metavar="PEM", help="TLS: the CA whose certificates senders must present (mutual TLS); "
                      "destinations' certificates are checked against it")
    node.add_argument("--folder", default="dicom-node", help="incoming images and the outbox (default: %(default)s)")
    node.add_argument("--secondary-capture", action="store_true", help="also send a Secondary Capture: the frame with "
                      "the nodule's contour and the answer burned in, for viewers that show neither SEG nor SR")
    node.add_argument("--per-series", type=float, metavar="SECONDS", help="answer a series as one nodule (the mean of "
                      "its views, the same finding in every view's SR) once no image of it has arrived for SECONDS")
    node.add_argument("--keep-rejected-days", type=float, metavar="DAYS", help="delete what could not be answered "
                      "(rejected/) after DAYS; without it, it stays until a person deletes it")
    node.add_argument("--retry", action="store_true", help="send what is in the outbox to --send-to, then exit")
    node.set_defaults(handler=_dicom_node)
