"""The Flower ServerApp: Flower's FedAvg, FedProx or FedAdam over the sites, the global model
written as a run folder after every round, and a restart resuming from the last completed round."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import yaml
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

from thyronet import log_to_stderr
from thyronet.errors import ThyronetError
from thyronet.federated.exchange import network_arrays, network_state
from thyronet.federated.globalrun import GlobalRun, ResumePoint
from thyronet.federated.history import RoundHistory
from thyronet.federated.local import check_recipe
from thyronet.runs.config import FederatedConfig, RunConfig, config_from_dict, dump_config

log = logging.getLogger(__name__)

# FedAdam's server-side moments: saved with every round so that a resumed federation continues them
OPTIMISER_STATE = ("m_t", "v_t")


def build_strategy(federated: FederatedConfig, history: RoundHistory) -> FedAvg:
    """Flower's strategy of ``federated.strategy``, sampling ``clients_per_round`` sites to train
    (every connected site when unset) and every site to evaluate."""
    per_round = federated.clients_per_round
    common = {
        # Flower samples max(fraction x connected, min_train_nodes) sites
        "fraction_train": 1.0 if per_round is None else 1e-9,
        "min_train_nodes": per_round or federated.min_sites,
        "fraction_evaluate": 1.0,
        "min_evaluate_nodes": federated.min_sites,
        "min_available_nodes": max(federated.min_sites, per_round or 0),
        "train_metrics_aggr_fn": history.train_aggregator,
        "evaluate_metrics_aggr_fn": history.evaluate_aggregator,
    }
    if federated.strategy == "fedprox":
        return FedProx(**common, proximal_mu=federated.proximal_mu)
    if federated.strategy == "fedadam":
        return FedAdam(**common, eta=federated.server_lr)
    return FedAvg(**common)


def optimiser_state(strategy: FedAvg) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: torch.from_numpy(np.asarray(v)) for k, v in getattr(strategy, name).items()}
            for name in OPTIMISER_STATE if getattr(strategy, name, None)}


def restore_optimiser(strategy: FedAvg, state: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, arrays in state.items():
        setattr(strategy, name, {k: v.numpy() for k, v in arrays.items()})


def run_federation(grid: Grid, config: RunConfig, out: Path) -> GlobalRun:
    """``config.federated.rounds`` rounds over the sites ``grid`` reaches, the global model in ``out``."""
    check_recipe(config)
    federated = config.federated
    run = GlobalRun(out, config)
    start: ResumePoint = run.open()
    remaining = federated.rounds - start.round
    if remaining <= 0:
        log.info("%s: all %d rounds are done", out, federated.rounds)
        return run
    strategy = build_strategy(federated, start.history)
    restore_optimiser(strategy, start.strategy_state)
    like = start.state
    settings = ConfigRecord({"run-config": dump_config(config), "round-offset": start.round, "local-epochs": federated.local_epochs})

    def after_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:  # Flower's call before the first round: nothing to write
            return None
        round_number = start.round + server_round
        entry = start.history.commit(round_number)
        run.write_round(round_number, network_state(arrays, like), start.history, optimiser_state(strategy))
        log.info("round %d of %d: global model in %s", round_number, federated.rounds, out)
        return MetricRecord({"auroc-case": entry["pooled"]["auroc-case"]})

    strategy.start(grid, network_arrays(start.state), num_rounds=remaining, timeout=federated.round_timeout,
                   train_config=settings, evaluate_config=ConfigRecord(dict(settings)), evaluate_fn=after_round)
    return run


def server_app(config: RunConfig, out: Path, errors: list[ThyronetError]) -> ServerApp:
    """A ServerApp that federates ``config`` into the run folder ``out`` (a simulation's): an input
    error ends the federation and is kept in ``errors``, for a one-line message, rather than raised
    in Flower's server thread."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            run_federation(grid, config, out)
        except ThyronetError as error:
            errors.append(error)

    return app


app = ServerApp()  # what a SuperLink runs (`thyronet federated run` submits it)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The federation a run submits: its config (YAML text) and run folder in the run config."""
    log_to_stderr()  # the app runs in a process Flower started
    config = config_from_dict(yaml.safe_load(str(context.run_config["run-config"])))
    run_federation(grid, config, Path(str(context.run_config["out"])))
