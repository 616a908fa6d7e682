"""``thyronet dicom-node``: receive images by C-STORE, send back DICOM SR and SEG."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _dicom_node(args: argparse.Namespace) -> int:
    from thyronet.apps.dicom_node import Destination, DicomNode
    from thyronet.inference.backends import load_backend

    destination = Destination.parse(args.send_to) if args.send_to else None
    node = DicomNode(load_backend(args.model), Path(args.folder), args.ae_title, destination, args.secondary_capture,
                     args.per_series)
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
    node.add_argument("--send-to", metavar="HOST:PORT:AET", help="where the SR and SEG go (a PACS); without it they stay in the outbox")
    node.add_argument("--folder", default="dicom-node", help="incoming images and the outbox (default: %(default)s)")
    node.add_argument("--secondary-capture", action="store_true", help="also send a Secondary Capture: the frame with "
                      "the nodule's contour and the answer burned in, for viewers that show neither SEG nor SR")
    node.add_argument("--per-series", type=float, metavar="SECONDS", help="answer a series as one nodule (the mean of "
                      "its views, the same finding in every view's SR) once no image of it has arrived for SECONDS")
    node.add_argument("--retry", action="store_true", help="send what is in the outbox to --send-to, then exit")
    node.set_defaults(handler=_dicom_node)
