"""``thyronet train|cv|evaluate|compare``: the training and evaluation engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.locate import resolve_data_path
from ..engine.config import RunConfig, load_config
from .data_cmd import load_collection


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Config file and the overrides every training command shares."""
    parser.add_argument("--config", default="cpu", help="YAML file or shipped config name: cpu, paper (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    parser.add_argument("--data", help="data source (default: $THYRONET_DDTI, then ../shared/data/ddti)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad file instead of skipping it")
    parser.add_argument("--model", help="registry model name (see `thyronet models`)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output-dir", help="where run folders go (default: runs)")
    parser.add_argument("--accelerator", help="cpu, gpu, auto ... (passed to Lightning)")
    parser.add_argument("--devices", help="number of devices, or a list such as 0,1 (passed to Lightning)")
    parser.add_argument("--num-nodes", type=int, help="machines for multi-node DDP (passed to Lightning)")
    parser.add_argument("--strategy", help="auto, ddp, ddp_spawn, ... (passed to Lightning)")


def resolve_config(args: argparse.Namespace) -> RunConfig:
    shorthands = {
        "model.name": args.model, "train.epochs": args.epochs, "seed": args.seed, "output_dir": args.output_dir,
        "trainer.accelerator": args.accelerator, "trainer.devices": args.devices,
        "trainer.num_nodes": args.num_nodes, "trainer.strategy": args.strategy,
    }
    overrides = list(args.overrides) + [f"{key}={value}" for key, value in shorthands.items() if value is not None]
    config = load_config(args.config, overrides)
    config.data.path = str(resolve_data_path(args.data or config.data.path))
    return config


def _train(args: argparse.Namespace) -> int:
    from ..data.splits import SplitPlan, holdout_plan
    from ..engine.train import fit, load_run, new_run_dir

    if args.resume:
        run_dir = Path(args.resume)
        config, split = load_run(run_dir)
        args.data = args.data or config.data.path
        collection = load_collection(args)
    else:
        config = resolve_config(args)
        args.data = config.data.path
        collection = load_collection(args)
        if config.split.file:
            split = SplitPlan.load(config.split.file).splits[0]
        else:
            split = holdout_plan(collection, config.split.val_fraction, config.split.test_fraction, config.seed).splits[0]
        run_dir = new_run_dir(config)
    result = fit(config, collection, split, run_dir, resume=bool(args.resume))
    return 0 if result.completed else 130


def register(subcommands: argparse._SubParsersAction) -> None:
    train = subcommands.add_parser("train", help="train a model on a case-grouped train/val/test split (main job)")
    add_config_arguments(train)
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder from its last checkpoint")
    train.set_defaults(handler=_train)
