"""``thyronet train|cv|evaluate|compare``: the training and evaluation engine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from thyronet.apps.cli.data_cmd import STRICT_HELP, add_data_arguments, load_collection, report_issues
from thyronet.data.locate import resolve_data_path
from thyronet.errors import ThyronetError
from thyronet.runs.shipped import shipped_configs

if TYPE_CHECKING:  # the library is imported when a command runs, not for its --help
    from thyronet.data.records import Collection
    from thyronet.runs.config import RunConfig


def add_config_arguments(parser: argparse.ArgumentParser, data: bool = True) -> None:
    """Config file and the overrides every training command shares (``data``: with --data)."""
    shipped = ", ".join(shipped_configs())
    parser.add_argument("--config", default="cpu", help=f"YAML file or shipped config name: {shipped} (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    if data:
        add_data_arguments(parser, positional=False)
    else:
        parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
    parser.add_argument("--model", help="registry model name (see `thyronet models`)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output-dir", help="where run folders go (default: runs)")
    parser.add_argument("--accelerator", help="cpu, gpu, auto ... (passed to Lightning)")
    parser.add_argument("--devices", help="number of devices, or a list such as 0,1 (passed to Lightning)")
    parser.add_argument("--num-nodes", type=int, help="machines for multi-node DDP (passed to Lightning)")
    parser.add_argument("--strategy", help="auto, ddp, ddp_spawn, ... (passed to Lightning)")


def resolve_config(args: argparse.Namespace, epochs_key: str = "train.epochs") -> RunConfig:
    """The config file with --set and the shorthand options applied (``--epochs`` sets ``epochs_key``)."""
    from thyronet.runs.config import load_config

    shorthands = {
        "model.name": args.model, epochs_key: args.epochs, "seed": args.seed, "output_dir": args.output_dir,
        "trainer.accelerator": args.accelerator, "trainer.devices": args.devices,
        "trainer.num_nodes": args.num_nodes, "trainer.strategy": args.strategy, "split.folds": getattr(args, "folds", None),
    }
    overrides = list(args.overrides) + [f"{key}={value}" for key, value in shorthands.items() if value is not None]
    config = load_config(args.config, overrides)
    if hasattr(args, "data"):
        config.data.path = str(resolve_data_path(args.data or config.data.path))
    return config


def _train(args: argparse.Namespace) -> int:
    from thyronet.data.splits import SplitPlan, holdout_plan
    from thyronet.training.train import fit, load_run, new_run_dir

    if args.resume:
        changed = [name for name, value in (("--set", args.overrides), ("--config", args.config != "cpu"), ("--model", args.model),
                                            ("--epochs", args.epochs), ("--seed", args.seed)) if value]
        if changed:
            raise ThyronetError(f"--resume continues a run with its own config; {', '.join(changed)} would be ignored "
                                "(start a new run to change it)")
        run_dir = Path(args.resume)
        config, split = load_run(run_dir)
        collection = training_data(config, args.data or config.data.path, args.strict)
    else:
        config = resolve_config(args)
        collection = training_data(config, config.data.path, args.strict)
        if config.split.file:
            split = SplitPlan.load(config.split.file).splits[0]
        else:
            split = holdout_plan(collection, config.split.val_fraction, config.split.test_fraction, config.split_seed).splits[0]
        run_dir = new_run_dir(config)
    result = fit(config, collection, split, run_dir, resume=bool(args.resume))
    return 0 if result.completed else 130


def training_data(config: RunConfig, data: str | None, strict: bool) -> Collection:
    """The source a run trains on, labelled by ``data.classes`` where the config lists classes."""
    from thyronet.data.records import relabel_by_class

    collection = load_collection(data, strict)
    return relabel_by_class(collection, config.data.classes) if config.data.classes else collection


def _fold_setup(args: argparse.Namespace) -> tuple[RunConfig, Collection]:
    """Config (with --folds) and data for the commands that cross-validate."""
    config = resolve_config(args)
    return config, training_data(config, config.data.path, args.strict)


def _cv(args: argparse.Namespace) -> int:
    from thyronet.training.cv import cross_validate

    config, collection = _fold_setup(args)
    out = Path(args.out or Path(config.output_dir) / f"cv-{config.model.name}-k{config.split.folds}-seed{config.seed}")
    return 0 if cross_validate(config, collection, out) is not None else 130


def _pretrain(args: argparse.Namespace) -> int:
    from thyronet.training.pretrain import pretrain

    if not args.images and not args.unlabelled:
        raise ThyronetError("nothing to pretrain on: give --images SOURCE and/or --unlabelled SOURCE")
    config = resolve_config(args, epochs_key="pretrain.epochs")
    records = []
    for source in args.images:
        records += load_collection(source, args.strict).images
    for source in args.unlabelled:
        records += [r for r in load_collection(source, args.strict).images if r.label is None]
    out = Path(args.out or Path(config.output_dir) / f"pretrain-{config.model.name}-seed{config.seed}")
    return 0 if pretrain(config, records, out) is not None else 130


def _compare(args: argparse.Namespace) -> int:
    from thyronet.training.compare import compare

    config, collection = _fold_setup(args)
    out = Path(args.out or Path(config.output_dir) / f"compare-k{config.split.folds}-seed{config.seed}")
    return 0 if compare(config, collection, args.models, out, args.reference, args.challenger) is not None else 130


def _evaluate(args: argparse.Namespace) -> int:
    from thyronet.data import open_source
    from thyronet.evaluation.scoring import evaluate_source

    collection = report_issues(open_source(args.data, strict=args.strict))
    _, table, out = evaluate_source(args.checkpoint, collection, args.data, args.out)
    print(table)
    print(f"wrote {out}/metrics.json, per-image results and figures")
    return 0


def register(subcommands: argparse._SubParsersAction) -> None:
    train = subcommands.add_parser("train", help="train a model on a case-grouped train/val/test split (main job)")
    add_config_arguments(train)
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run folder from its last checkpoint")
    train.set_defaults(handler=_train)

    cv = subcommands.add_parser("cv", help="case-grouped K-fold cross-validation: mean ± std and pooled AUROC")
    add_config_arguments(cv)
    cv.add_argument("--folds", type=int, help="number of folds (default: from the config, 5)")
    cv.add_argument("--out", help="CV folder; running the same command again resumes it")
    cv.set_defaults(handler=_cv)

    pretrain = subcommands.add_parser(
        "pretrain", help="self-supervised pretraining of the encoder on images without their labels (SimCLR)",
        description="Pretrain the config's model on ultrasound images, labels unused; the encoder it writes "
                    "(OUT/encoder.pt) is what --set model.weights=... takes. Images of cases that a later "
                    "evaluation scores should not be pretrained on: take such a source with --unlabelled.")
    add_config_arguments(pretrain, data=False)
    pretrain.add_argument("--images", action="append", default=[], metavar="SOURCE",
                          help="a source whose every image is used, e.g. another organ's ultrasound (repeatable)")
    pretrain.add_argument("--unlabelled", action="append", default=[], metavar="SOURCE",
                          help="a source of which only the images without a label are used (repeatable)")
    pretrain.add_argument("--out", help="pretraining folder; running the same command again resumes it")
    pretrain.set_defaults(handler=_pretrain)

    compare = subcommands.add_parser("compare", help="cross-validate several models on the same folds (Tables 1-2)")
    add_config_arguments(compare)
    compare.add_argument("--models", nargs="+", default=["baseline", "baseline_bottleneck", "baseline_block", "thyronet_x4"],
                         help="registry names (default: the paper's ablation)")
    compare.add_argument("--folds", type=int, help="number of folds (default: from the config, 5)")
    compare.add_argument("--reference", default="baseline", help="the model the paired test compares against (default: %(default)s)")
    compare.add_argument("--challenger", default="thyronet_x4", help="the model the paired test puts forward (default: %(default)s)")
    compare.add_argument("--out", help="comparison folder; running the same command again resumes it")
    compare.set_defaults(handler=_compare)

    evaluate = subcommands.add_parser("evaluate", help="score a model on any labelled source (DDTI, class folders, CSV, DICOM)")
    evaluate.add_argument("checkpoint", help="a .ckpt file, a run folder (its best checkpoint), a CV folder (its fold ensemble) "
                                             "or an ONNX file from `thyronet export`")
    evaluate.add_argument("data", help="labelled data source")
    evaluate.add_argument("--out", help="folder for metrics.json, predictions and figures")
    evaluate.add_argument("--strict", action="store_true", help=STRICT_HELP)
    evaluate.set_defaults(handler=_evaluate)
