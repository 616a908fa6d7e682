"""Per-round metrics, per site and pooled, gathered from the sites' replies as Flower's strategy
aggregates them."""

from __future__ import annotations

import logging
import math
from typing import Any

from flwr.app import MetricRecord, RecordDict

from thyronet.errors import ThyronetError
from thyronet.federated.exchange import METRICS, SITE, WEIGHT, SiteInfo

log = logging.getLogger(__name__)


def weighted_mean(values: list[tuple[float, float]]) -> float:
    """The mean of (value, weight) pairs whose value is defined; NaN when none is."""
    defined = [(v, w) for v, w in values if not math.isnan(v)]
    total = sum(w for _, w in defined)
    return sum(v * w for v, w in defined) / total if total else float("nan")


class RoundHistory:
    """Every round's site replies and their pooled figures, and every site that took part.

    The strategy calls :meth:`train_aggregator` and :meth:`evaluate_aggregator` with a round's
    replies; :meth:`commit` files them under the round once it is over. Pooled figures are the
    sites' own, weighted: the training loss by training images, the held-out case AUROC by
    held-out cases (a mean of site AUROCs; a pooled AUROC over all cases would need every case's
    score at one place, which never leaves its site)."""

    def __init__(self, rounds: list[dict[str, Any]] | None = None, sites: dict[str, dict[str, Any]] | None = None) -> None:
        self.rounds = rounds or []
        self.sites = sites or {}
        self._train: dict[str, dict[str, float]] = {}
        self._evaluate: dict[str, dict[str, float]] = {}

    def _collect(self, records: list[RecordDict], into: dict[str, dict[str, float]]) -> None:
        for record in records:
            info = SiteInfo.from_record(record[SITE])
            self.sites[info.name] = info.to_dict()
            into[info.name] = dict(record[METRICS].items())

    def train_aggregator(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        self._collect(records, self._train)
        loss = weighted_mean([(s["train-loss"], s[weight_key]) for s in self._train.values()])
        return MetricRecord({"train-loss": loss, "train-images": int(sum(s[weight_key] for s in self._train.values()))})

    def evaluate_aggregator(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        self._collect(records, self._evaluate)
        sites = self._evaluate.values()
        return MetricRecord({
            "auroc-case": weighted_mean([(s["auroc-case"], s[weight_key]) for s in sites]),
            "balanced-acc-case": weighted_mean([(s["balanced-acc-case"], s[weight_key]) for s in sites]),
            "cases": int(sum(s[weight_key] for s in sites)),
        })

    def commit(self, round_number: int) -> dict[str, Any]:
        """File the replies gathered since the last commit under ``round_number``; refuse a round
        in which no site returned weights (Flower logs each site's error)."""
        if not self._train:
            raise ThyronetError(f"round {round_number}: no site returned trained weights (see the sites' errors above)")
        sites = {}
        for name in sorted({*self._train, *self._evaluate}):
            trained, scored = dict(self._train.get(name, {})), dict(self._evaluate.get(name, {}))
            images, cases = int(trained.pop(WEIGHT, 0)), int(scored.pop(WEIGHT, 0))
            sites[name] = {**trained, **scored, "train-images": images, "val-cases": cases}
        pooled = {
            "train-loss": weighted_mean([(s["train-loss"], s["train-images"]) for s in sites.values() if "train-loss" in s]),
            "auroc-case": weighted_mean([(s["auroc-case"], s["val-cases"]) for s in sites.values() if "auroc-case" in s]),
            "balanced-acc-case": weighted_mean([(s["balanced-acc-case"], s["val-cases"]) for s in sites.values()
                                                if "balanced-acc-case" in s]),
            "val-cases": sum(s["val-cases"] for s in sites.values()),
        }
        entry = {"round": round_number, "sites": sites, "pooled": pooled}
        self.rounds.append(entry)
        self._train, self._evaluate = {}, {}
        for name, values in sites.items():
            log.info("round %d  %-12s train loss %.4f  held-out case AUROC %.3f (%d cases)", round_number, name,
                     values.get("train-loss", float("nan")), values.get("auroc-case", float("nan")), values["val-cases"])
        log.info("round %d  %-12s train loss %.4f  held-out case AUROC %.3f (%d cases, the sites' case-weighted mean)",
                 round_number, "pooled", pooled["train-loss"], pooled["auroc-case"], pooled["val-cases"])
        return entry
