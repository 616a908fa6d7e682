"""``thyronet reads stats``: how far the radiologists went along with the model, from a reading store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _stats(args: argparse.Namespace) -> int:
    from thyronet.data.readstore import ReadStore, is_store_folder
    from thyronet.errors import ThyronetError
    from thyronet.evaluation.agreement import agreement, format_agreement
    from thyronet.io import write_text_atomic

    if not is_store_folder(Path(args.store)):
        raise ThyronetError(f"{args.store}: not a reading store (no reads.sqlite; see `thyronet serve --store`)")
    result = agreement(ReadStore(args.store).signed())
    print(format_agreement(result))
    if args.out:
        write_text_atomic(Path(args.out), json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:
    reads = subcommands.add_parser("reads", help="the reading store: agreement of the radiologists' signed reads with the model")
    actions = reads.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="per ACR category kappa (proposed vs signed), level and recommendation "
                               "agreement, outline and caliper changes, sensitivity and specificity against outcomes")
    stats.add_argument("store", help="the reading store folder (serve --store)")
    stats.add_argument("--out", help="also write the figures as JSON")
    reads.set_defaults(handler=_stats)
