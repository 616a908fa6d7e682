"""What travels between a site and the server, in Flower's records: the one place that defines it.

To a site (train and evaluate messages): the global network's weights (``ArrayRecord``) and a
``ConfigRecord`` with the recipe (the run's config as YAML text), the round and, for FedProx, the
proximal weight.

From a site, a train reply: the network's weights after local training, a ``MetricRecord`` with
the number of training images (the aggregation weight) and the mean training loss, and a
``ConfigRecord`` naming the site with its data fingerprint (a SHA-256 over the whole local data
set) and counts of cases and images. An evaluate reply: a ``MetricRecord`` of the global model's
held-out case AUROC and balanced accuracy on the site's own validation cases, with their count,
and the same ``ConfigRecord``. Never an image, a case id, a label or any per-case value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

ARRAYS, CONFIG, METRICS, SITE = "arrays", "config", "metrics", "site"
WEIGHT = "num-examples"  # Flower's strategies weight each site's reply by this metric


def network_arrays(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """A network's state dict (weights and batch-norm statistics) as an ``ArrayRecord``."""
    return ArrayRecord({k: v.detach().cpu() for k, v in state.items()})


def network_state(arrays: ArrayRecord, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict an ``ArrayRecord`` holds, in the dtypes of ``like`` (averaging turns integer
    counters such as batch-norm's ``num_batches_tracked`` into floats)."""
    state = arrays.to_torch_state_dict()
    return {k: state[k].to(like[k].dtype) if k in like else state[k] for k in state}


@dataclass(frozen=True)
class SiteInfo:
    """A site as the server sees it: a name, a fingerprint of its data, counts. No case identity."""

    name: str
    data_fingerprint: str
    cases: int
    images: int
    benign_cases: int
    malignant_cases: int
    train_cases: int
    val_cases: int

    def record(self) -> ConfigRecord:
        return ConfigRecord({k.replace("_", "-"): v for k, v in self.__dict__.items()})

    @classmethod
    def from_record(cls, record: ConfigRecord) -> SiteInfo:
        return cls(**{k.replace("-", "_"): record[k] for k in record})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train_reply(message: Message, state: Mapping[str, torch.Tensor], images: int, loss: float, site: SiteInfo) -> Message:
    """A site's answer to a train message: its weights after local training, weighted by ``images``."""
    metrics = MetricRecord({WEIGHT: images, "train-loss": float(loss)})
    return Message(RecordDict({ARRAYS: network_arrays(state), METRICS: metrics, SITE: site.record()}), reply_to=message)


def evaluate_reply(message: Message, metrics: Mapping[str, float], site: SiteInfo) -> Message:
    """A site's answer to an evaluate message: the global model's held-out case metrics, weighted
    by the number of held-out cases."""
    record = MetricRecord({WEIGHT: int(metrics["n"]), **{k: v if isinstance(v, int) else float(v) for k, v in metrics.items() if k != "n"}})
    return Message(RecordDict({METRICS: record, SITE: site.record()}), reply_to=message)
