"""A federation on this machine: one data set dealt out by case to N sites, run by Flower's
Simulation Engine (its Ray backend, one virtual SuperNode per site)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context
from flwr.simulation import run_simulation

from thyronet.data.records import Collection
from thyronet.data.sources import open_source
from thyronet.errors import ThyronetError
from thyronet.federated.client import client_app
from thyronet.federated.globalrun import GlobalRun
from thyronet.federated.local import check_recipe
from thyronet.federated.server import server_app
from thyronet.federated.sites import SplitMode, partition, subset
from thyronet.runs.config import RunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatedSites:
    """Site k of a simulation: the k-th share of the cases of one data set (read once per process)."""

    data: str
    sites: int
    mode: SplitMode
    seed: int
    strict: bool = False

    def shares(self) -> tuple[Collection, list[list[str]]]:
        collection = open_source(Path(self.data), self.strict)
        return collection, partition(collection, self.sites, self.mode, self.seed)

    def __call__(self, context: Context) -> tuple[str, Collection]:
        index = int(context.node_config["partition-id"])
        collection, shares = self.shares()
        return f"site-{index}", subset(collection, shares[index])


def simulate(config: RunConfig, data: str, sites: int, mode: SplitMode, out: Path, strict: bool = False) -> GlobalRun:
    """Federate ``config`` over ``sites`` shares of ``data`` into the run folder ``out`` (``strict``:
    a problem with any input file stops it, rather than the file being skipped)."""
    check_recipe(config)
    # each virtual site trains in a Ray worker of one core; threads beyond the cores only contend
    cores = os.cpu_count() or 1
    if config.trainer.threads is None:
        config.trainer.threads = max(1, cores // min(sites, cores))
    run = GlobalRun(out, config)
    run.check_config()
    source = SimulatedSites(data, sites, mode, config.split_seed, strict)
    collection, shares = source.shares()  # refuse a split that leaves a site without both classes, before starting
    for issue in collection.issues:
        log.warning("skipped %s", issue)
    for index, cases in enumerate(shares):
        part = subset(collection, cases)
        counts = part.label_counts("case")
        log.info("site-%d: %d cases (%d benign, %d malignant)", index, len(cases), counts["benign"], counts["malignant"])
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": min(sites, cores), "include_dashboard": False, "log_to_driver": True}}
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPU is asked for: leave the variables alone
    os.environ.setdefault("RAY_enable_metrics_collection", "0")  # no dashboard to collect them for
    errors: list[ThyronetError] = []
    run_simulation(server_app(config, out, errors), client_app(source), num_supernodes=sites, backend_config=backend)
    if errors:
        raise errors[0]
    return run
