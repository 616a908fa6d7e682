"""``thyronet federated simulate``: federated training on Flower, run on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from thyronet.apps.cli.engine_cmd import add_config_arguments, resolve_config


def _simulate(args: argparse.Namespace) -> int:
    from thyronet.federated.simulate import simulate

    overrides = {"federated.rounds": args.rounds, "federated.strategy": args.aggregation}
    args.overrides = [*args.overrides, *(f"{key}={value}" for key, value in overrides.items() if value is not None)]
    config = resolve_config(args, epochs_key="federated.local_epochs")
    run = simulate(config, config.data.path, args.sites, args.split, Path(args.out))
    print(f"global model after round {run.rounds_done()} of {config.federated.rounds}: {args.out} "
          f"(its figures per site and pooled: {run.history_file})")
    return 0 if run.rounds_done() == config.federated.rounds else 1


def register(subcommands: argparse._SubParsersAction) -> None:
    federated = subcommands.add_parser("federated", help="federated training on Flower: sites train, no image leaves a site")
    actions = federated.add_subparsers(dest="action", metavar="ACTION", required=True)
    simulate = actions.add_parser(
        "simulate", help="deal one data set out by case to N sites and federate them on this machine",
        description="Split a labelled data set by case into N sites (iid: each with about the whole set's label "
                    "ratio; label: skewed label ratios) and run the federation with Flower's Simulation Engine. "
                    "The global model after each round is the run folder OUT; the same command again resumes it "
                    "from its last completed round (a larger --rounds continues it).")
    add_config_arguments(simulate)
    simulate.set_defaults(config="federated")
    simulate.add_argument("--sites", type=int, required=True, help="number of sites")
    simulate.add_argument("--rounds", type=int, help="federated rounds (default: the config's federated.rounds)")
    simulate.add_argument("--out", required=True, help="the run folder of the global model")
    simulate.add_argument("--split", choices=("iid", "label"), default="iid", help="how the cases are dealt (default: %(default)s)")
    simulate.add_argument("--aggregation", choices=("fedavg", "fedprox", "fedadam"),
                          help="the server's aggregation, federated.strategy (default: the config's)")
    simulate.set_defaults(handler=_simulate)
