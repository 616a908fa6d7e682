"""The ``thyronet`` command: subcommands for data, models, training, prediction and serving."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from thyronet import __version__, log_to_stderr
from thyronet.apps.cli import (
    access_cmd,
    clinical_cmd,
    data_cmd,
    dicom_cmd,
    engine_cmd,
    federated_cmd,
    models_cmd,
    reads_cmd,
    serve_cmd,
)
from thyronet.errors import ThyronetError

COMMAND_GROUPS = (data_cmd, models_cmd, engine_cmd, federated_cmd, clinical_cmd, serve_cmd, reads_cmd, access_cmd, dicom_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thyronet",
        description="Computer-aided diagnosis of thyroid nodules on ultrasound (an aid, not a diagnosis).",
    )
    parser.add_argument("--version", action="version", version=f"thyronet {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(subcommands)
    return parser


def configure_logging() -> None:
    """thyronet's own messages to stderr, without the root logger's prefixes."""
    log_to_stderr()
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*infer the batch indices.*")  # archive batches are made by the dataset


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; input errors print one line and exit 2, Ctrl-C exits 130."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return int(args.handler(args) or 0)
    except ThyronetError as error:
        print(f"thyronet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"thyronet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
