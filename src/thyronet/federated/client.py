"""The Flower ClientApp a site runs: train the server's recipe on the site's data from the global
weights, and score the global model on the site's held-out cases (:mod:`thyronet.federated.exchange`
says what the replies hold)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from thyronet import log_to_stderr
from thyronet.data.records import Collection
from thyronet.data.sources import open_source
from thyronet.data.splits import Split
from thyronet.errors import ThyronetError
from thyronet.federated.exchange import ARRAYS, CONFIG, SiteInfo, evaluate_reply, network_state, train_reply
from thyronet.federated.local import check_recipe, evaluate_locally, site_recipe, train_locally
from thyronet.federated.sites import describe_site, site_split
from thyronet.inference.networks import build_classifier
from thyronet.runs.config import RunConfig, config_from_dict

log = logging.getLogger(__name__)

# A site's data: its name and labelled collection, found from its Flower context (the SuperNode's
# node config in a deployment, the virtual node's partition in a simulation)
SiteSource = Callable[[Context], tuple[str, Collection]]


def node_site(context: Context) -> tuple[str, Collection]:
    """The data a SuperNode was started with: ``--node-config 'data-path="DIR" site-name="NAME"'``."""
    config = context.node_config
    if "data-path" not in config:
        raise ThyronetError("this SuperNode has no data: start it with --node-config 'data-path=\"DIR\" site-name=\"NAME\"'")
    path = Path(str(config["data-path"]))
    return str(config.get("site-name", path.name)), open_source(path)


@dataclass
class Site:
    """A site's data as a round uses it: its collection, its own split, its description."""

    collection: Collection
    split: Split
    info: SiteInfo


_sites: dict[tuple[int, int, float], Site] = {}  # per process: read a site's data once, not every round


def recipe(message: Message) -> tuple[RunConfig, dict]:
    """The run config and round settings a train or evaluate message carries."""
    settings = dict(message.content[CONFIG])
    config = config_from_dict(yaml.safe_load(str(settings["run-config"])))
    check_recipe(config)
    return config, settings


def site_of(source: SiteSource, context: Context, config: RunConfig) -> Site:
    key = (context.node_id, config.split_seed, config.split.val_fraction)
    if key not in _sites:
        name, collection = source(context)
        split = site_split(config, collection)
        _sites[key] = Site(collection, split, describe_site(name, collection, split))
        info = _sites[key].info
        if collection.issues:  # the site's own log: files it could not read, skipped
            log.warning("site %s: %d file(s) skipped, e.g. %s", info.name, len(collection.issues), collection.issues[0])
        log.info("site %s: %d cases (%d benign, %d malignant), %d to train on, %d held out", info.name, info.cases,
                 info.benign_cases, info.malignant_cases, info.train_cases, info.val_cases)
    return _sites[key]


def global_state(message: Message, config: RunConfig) -> dict:
    like = build_classifier(config, pretrained=False).state_dict()
    return network_state(message.content[ARRAYS], like)


def client_app(source: SiteSource = node_site) -> ClientApp:
    """The ClientApp of a site whose data ``source`` finds."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        log_to_stderr()  # the app runs in a process Flower started
        config, settings = recipe(message)
        site = site_of(source, context, config)
        round_number = int(settings["round-offset"]) + int(settings["server-round"])
        local = site_recipe(config, round_number, int(settings["local-epochs"]))
        result = train_locally(local, site.collection, site.split, global_state(message, config),
                               float(settings.get("proximal-mu", 0.0)))
        log.info("site %s, round %d: trained %d epoch(s) on %d images, loss %.4f", site.info.name, round_number,
                 local.train.epochs, result.images, result.loss)
        return train_reply(message, result.state, result.images, result.loss, site.info)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        log_to_stderr()
        config, _ = recipe(message)
        site = site_of(source, context, config)
        metrics = evaluate_locally(config, site.collection, site.split, global_state(message, config))
        return evaluate_reply(message, metrics, site.info)

    return app


app = client_app()  # what a SuperNode runs (`thyronet federated supernode`)
