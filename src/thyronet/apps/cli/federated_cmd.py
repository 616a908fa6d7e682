"""``thyronet federated simulate|superlink|supernode|keys|register|run``: federated training on
Flower, simulated on this machine or deployed across sites (docs/guide.md, "Federated training")."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from thyronet.apps.cli.engine_cmd import add_config_arguments, resolve_config
from thyronet.errors import ThyronetError


def _simulate(args: argparse.Namespace) -> int:
    from thyronet.federated.simulate import simulate

    overrides = {"federated.rounds": args.rounds, "federated.strategy": args.aggregation}
    args.overrides = [*args.overrides, *(f"{key}={value}" for key, value in overrides.items() if value is not None)]
    config = resolve_config(args, epochs_key="federated.local_epochs")
    run = simulate(config, config.data.path, args.sites, args.split, Path(args.out), args.strict)
    print(f"global model after round {run.rounds_done()} of {config.federated.rounds}: {args.out} "
          f"(its figures per site and pooled: {run.history_file})")
    return 0 if run.rounds_done() == config.federated.rounds else 1


def _tls_argument(parser: argparse.ArgumentParser, option: str, help_text: str) -> None:
    parser.add_argument(option, help=help_text)
    parser.add_argument("--insecure", action="store_true", help="no TLS: for a test on one machine only, never across sites")


def _tls_file(args: argparse.Namespace, value: str | None, option: str) -> Path | None:
    if args.insecure:
        return None
    if not value:
        raise ThyronetError(f"{option} is needed for TLS (or --insecure, for a test on one machine only)")
    return Path(value)


def _superlink(args: argparse.Namespace) -> None:
    from thyronet.federated.deploy import Tls, environment, superlink_command

    tls = None if args.insecure else Tls.from_folder(_tls_file(args, args.certificates, "--certificates"))
    command = superlink_command(tls, args.host, args.fleet_port, args.control_port, args.serverappio_port,
                                args.database and Path(args.database), node_auth=not args.no_node_auth)
    os.execve(command[0], command, environment())  # Flower's process takes this one's place: signals reach it


def _supernode(args: argparse.Namespace) -> None:
    from thyronet.federated.deploy import environment, supernode_command

    command = supernode_command(args.superlink, Path(args.data), args.site, _tls_file(args, args.root_certificates, "--root-certificates"),
                                args.key and Path(args.key), args.clientappio_port)
    os.execve(command[0], command, environment())


def _keys(args: argparse.Namespace) -> int:
    from thyronet.federated.deploy import write_site_keys

    private, public = write_site_keys(Path(args.out), args.site)
    print(f"wrote {private} (stays at the site, owner-only) and {public} (send it to the coordinating site to register)")
    return 0


def _register(args: argparse.Namespace) -> int:
    from thyronet.federated.deploy import FlowerCli

    with FlowerCli(args.superlink, _tls_file(args, args.root_certificates, "--root-certificates")) as flwr:
        return flwr.register(Path(args.public_key))


def _run(args: argparse.Namespace) -> int:
    from thyronet.federated.deploy import FlowerCli

    if not Path(args.out).is_absolute():
        raise ThyronetError(f"--out {args.out}: give an absolute path on the SuperLink's machine (the ServerApp writes it there)")
    args.overrides = [*args.overrides, *([f"federated.rounds={args.rounds}"] if args.rounds else [])]
    config = resolve_config(args, epochs_key="federated.local_epochs")
    config.data.path = None  # each site's data is its SuperNode's
    with FlowerCli(args.superlink, _tls_file(args, args.root_certificates, "--root-certificates")) as flwr:
        run_id = flwr.submit(config, Path(args.out))
    print(f"run {run_id} completed: the global model is {args.out} on the SuperLink's machine")
    return 0


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

    superlink = actions.add_parser("superlink", help="the coordinating site: a Flower SuperLink (TLS, SuperNode authentication)")
    _tls_argument(superlink, "--certificates", "folder with ca.crt, server.crt and server.key (the SuperLink's certificate)")
    superlink.add_argument("--host", default="0.0.0.0", help="address of the Fleet and Control APIs (default: %(default)s)")
    superlink.add_argument("--fleet-port", type=int, default=9092, help="SuperNodes connect here (default: %(default)s)")
    superlink.add_argument("--control-port", type=int, default=9093, help="`thyronet federated run` submits here (default: %(default)s)")
    superlink.add_argument("--serverappio-port", type=int, default=9091,
                           help="the ServerApp's API, on this machine only (default: %(default)s)")
    superlink.add_argument("--database", help="SQLite file of the SuperLink's state (registered SuperNodes, runs); default: memory")
    superlink.add_argument("--no-node-auth", action="store_true", help="admit any SuperNode that reaches it (tests only)")
    superlink.set_defaults(handler=_superlink)

    supernode = actions.add_parser("supernode", help="a hospital: a Flower SuperNode that trains on its own data")
    supernode.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's Fleet API (port 9092)")
    supernode.add_argument("--data", required=True, help="the site's labelled data: DDTI folder, class folders, CSV manifest, DICOM")
    supernode.add_argument("--site", required=True, help="the site's name in the federation's records (no patient data)")
    _tls_argument(supernode, "--root-certificates", "the CA certificate that signed the SuperLink's")
    supernode.add_argument("--key", help="the site's private key (`thyronet federated keys`), when the SuperLink authenticates nodes")
    supernode.add_argument("--clientappio-port", type=int, default=9094, help="local port of the ClientApp's API (default: %(default)s)")
    supernode.set_defaults(handler=_supernode)

    keys = actions.add_parser("keys", help="a SuperNode's key pair: SITE.key stays, SITE.pub is registered at the SuperLink")
    keys.add_argument("site")
    keys.add_argument("--out", default=".", help="folder (default: the current one)")
    keys.set_defaults(handler=_keys)

    register_ = actions.add_parser("register", help="admit a site's SuperNode at the SuperLink (its public key)")
    register_.add_argument("public_key", help="SITE.pub from `thyronet federated keys`")
    register_.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's Control API (port 9093)")
    _tls_argument(register_, "--root-certificates", "the CA certificate that signed the SuperLink's")
    register_.set_defaults(handler=_register)

    run = actions.add_parser("run", help="start a federation on a SuperLink's sites and follow it to its end")
    add_config_arguments(run, data=False)
    run.set_defaults(config="federated")
    run.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's Control API (port 9093)")
    _tls_argument(run, "--root-certificates", "the CA certificate that signed the SuperLink's")
    run.add_argument("--rounds", type=int, help="federated rounds (default: the config's federated.rounds)")
    run.add_argument("--out", required=True, help="the global model's run folder, an absolute path on the SuperLink's machine; "
                                                  "the same command again resumes it")
    run.set_defaults(handler=_run)
