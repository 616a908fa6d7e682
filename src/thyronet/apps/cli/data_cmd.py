"""``thyronet data summary|preview|split``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from thyronet.data.locate import resolve_data_path
from thyronet.errors import ThyronetError

STRICT_HELP = "stop at the first bad file instead of skipping it"


def add_data_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """The data location and strictness options shared by every command that reads data."""
    help_text = "data source: DDTI folder, class folders, CSV manifest (default: $THYRONET_DDTI, then ../shared/data/ddti)"
    if positional:
        parser.add_argument("data", nargs="?", help=help_text)
    else:
        parser.add_argument("--data", help=help_text)
    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)


def report_issues(collection):
    """Print the problems a source skipped to stderr, one line each, and return the collection."""
    for issue in collection.issues:
        print(f"warning: {issue}", file=sys.stderr)
    if collection.issues:
        print(f"warning: {len(collection.issues)} problem(s) skipped (use --strict to stop instead)", file=sys.stderr)
    return collection


def load_collection(data: str | None, strict: bool = False, report: bool = True):
    """Open a data source (None: the default location); skipped problems go to stderr."""
    from thyronet.data.sources import open_source

    collection = open_source(resolve_data_path(data), strict=strict)
    return report_issues(collection) if report else collection


def _summary(args: argparse.Namespace) -> int:
    from thyronet.data.summary import format_summary, summarise

    summary = summarise(load_collection(args.data, args.strict, report=False))  # the summary lists the warnings
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from thyronet.data.preview import write_preview
    from thyronet.runs.config import load_config

    collection = load_collection(args.data, args.strict)
    if not collection.images:
        raise ThyronetError(f"{collection.root}: no readable images to preview")
    config = load_config(args.config, args.overrides)
    out = write_preview(collection.images, config.data.preprocess, config.data.roi, Path(args.out), args.count, args.seed)
    print(f"wrote {out}")
    return 0


def _split(args: argparse.Namespace) -> int:
    from thyronet.data.splits import holdout_plan, kfold_plan, receipt

    collection = load_collection(args.data, args.strict)
    if args.folds:
        plan = kfold_plan(collection, args.folds, args.seed)
    else:
        plan = holdout_plan(collection, args.val_fraction, args.test_fraction, args.seed)
    for index, split in enumerate(plan.splits):
        print(f"split {index}:\n{receipt(collection, split)}")
    plan.save(args.out)
    print(f"wrote {args.out}")
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:
    data = subcommands.add_parser("data", help="inspect data sources and make splits")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)

    summary = actions.add_parser("summary", help="count cases, images, labels, TIRADS and descriptors")
    add_data_arguments(summary)
    summary.add_argument("--json", action="store_true", help="print JSON instead of text")
    summary.set_defaults(handler=_summary)

    preview = actions.add_parser("preview", help="write a PNG grid of preprocessed samples with outlines")
    add_data_arguments(preview)
    preview.add_argument("--out", default="preview.png", help="PNG to write (default: %(default)s)")
    preview.add_argument("--count", type=int, default=16, help="number of samples (default: %(default)s)")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--config", default="cpu", help="show what this config's model sees: its preprocessing and region "
                         "of interest (expert outline, unjittered) (default: %(default)s)")
    preview.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value, e.g. --set data.preprocess.clahe=true (repeatable)")
    preview.set_defaults(handler=_preview)

    split = actions.add_parser("split", help="make a case-grouped, stratified split and save it as JSON")
    add_data_arguments(split)
    split.add_argument("--out", default="split.json", help="JSON file to write (default: %(default)s)")
    split.add_argument("--folds", type=int, help="K-fold cross-validation with K folds instead of train/val/test")
    split.add_argument("--val-fraction", type=float, default=0.2)
    split.add_argument("--test-fraction", type=float, default=0.2)
    split.add_argument("--seed", type=int, default=42)
    split.set_defaults(handler=_split)
