"""The server's model after each round as a normal thyronet run folder, and the federation's
resume point.

Beside a training run's files (config.yaml, split.json, provenance.json, results.json,
checkpoints/best.ckpt that ``predict``, ``serve`` and ``dicom-node`` load) it holds
``federation.json``: every round's figures per site and pooled. ``checkpoints/last.ckpt`` is the
resume point: the global weights of the last completed round, the round's number and the server
optimiser's state (FedAdam's moments)."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml

from thyronet import __version__
from thyronet.data.splits import Split, SplitPlan
from thyronet.data.vocabulary import DESCRIPTORS
from thyronet.errors import DataError, ThyronetError
from thyronet.evaluation.tables import nan_to_none
from thyronet.federated.history import RoundHistory
from thyronet.inference.calibration import Calibration
from thyronet.inference.checkpoint import plain, safe_load
from thyronet.inference.networks import build_classifier
from thyronet.io import atomic_path, write_text_atomic
from thyronet.runs.config import RunConfig, config_from_dict, dump_config
from thyronet.runs.layout import RunFolder
from thyronet.training.provenance import git_commit, package_versions, processor

log = logging.getLogger(__name__)

# No per-case value leaves a site, so no threshold is chosen on validation cases: every answer says so
UNCALIBRATED = ("a federated model: no operating threshold was chosen on held-out cases (none leaves its site); "
                "the threshold is 0.5 on uncalibrated probabilities")
HEADS_NOT_ASSESSED = {"assessed": False, "n": 0, "reason": "a federated model: the descriptor heads were not scored on held-out images"}


def combined_fingerprint(sites: dict[str, dict[str, Any]]) -> str:
    """One fingerprint of the federation's data: SHA-256 over the sites' names and fingerprints."""
    digest = hashlib.sha256()
    for name in sorted(sites):
        digest.update(f"{name}|{sites[name]['data_fingerprint']}\n".encode())
    return digest.hexdigest()


@dataclass
class ResumePoint:
    """Where a federation starts: round 0 and the initial network, or its last completed round."""

    round: int
    state: dict[str, torch.Tensor]
    history: RoundHistory
    strategy_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


class GlobalRun:
    """The run folder a federation writes its global model to, round after round."""

    def __init__(self, root: Path, config: RunConfig) -> None:
        self.folder = RunFolder(Path(root))
        self.config = config

    @property
    def history_file(self) -> Path:
        return self.folder.root / "federation.json"

    def check_config(self) -> None:
        """Refuse to continue a folder that holds a federation of another config."""
        if not self.folder.config.is_file():
            return
        stored = config_from_dict(yaml.safe_load(self.folder.config.read_text()))
        # more rounds continue a federation, and the machine's settings (threads, accelerator) may differ
        stored.federated.rounds, stored.trainer = self.config.federated.rounds, self.config.trainer
        if stored.to_dict() != self.config.to_dict():
            raise ThyronetError(f"{self.folder.root}: holds a federation of another config; rerun with its own config to "
                                "resume it (only federated.rounds and trainer.* may change), or give another --out")

    def rounds_done(self) -> int:
        """The last completed round (0: none yet)."""
        if not self.history_file.is_file():
            return 0
        return max((r["round"] for r in json.loads(self.history_file.read_text())["rounds"]), default=0)

    def open(self) -> ResumePoint:
        """Start a new run folder, or continue the one there from its last completed round (its
        config must be this one, ``federated.rounds`` aside)."""
        folder = self.folder
        self.check_config()
        folder.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder.config, dump_config(self.config))  # (with the rounds now asked for)
        if not folder.last.is_file():
            torch.manual_seed(self.config.seed)  # the initial global network, as the run's seed draws it
            network = build_classifier(self.config, self.config.model.weights)
            return ResumePoint(0, {k: v.detach().clone() for k, v in network.state_dict().items()}, RoundHistory())
        checkpoint = safe_load(folder.last)
        try:
            done = int(checkpoint["federation"]["round"])
            state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
            strategy_state = checkpoint["federation"].get("strategy_state", {})
            saved = json.loads(self.history_file.read_text())
        except (KeyError, TypeError, ValueError, OSError) as error:
            raise DataError(folder.last, f"not a federation's resume point ({error.__class__.__name__}: {error})") from None
        history = RoundHistory([r for r in saved["rounds"] if r["round"] <= done], saved["sites"])
        log.info("resuming the federation in %s after round %d of %d", folder.root, done, self.config.federated.rounds)
        return ResumePoint(done, state, history, strategy_state)

    def info(self, round_number: int, sites: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What the checkpoint carries beside the weights, as a trained run's does."""
        info: dict[str, Any] = {
            "version": __version__, "calibration": Calibration(warning=UNCALIBRATED).to_dict(),
            "data_fingerprint": combined_fingerprint(sites), "run_dir": str(self.folder.root),
            "federation": {"round": round_number, "strategy": self.config.federated.strategy, "sites": sorted(sites)},
        }
        if self.config.model.descriptor_heads:
            info["descriptor_reliability"] = {head: dict(HEADS_NOT_ASSESSED) for head in DESCRIPTORS}
        roi = self.config.data.roi
        if roi.mode == "predicted" and roi.segmenter:
            from thyronet.inference.segmenter import Segmenter

            info["segmenter"] = Segmenter.load(roi.segmenter).state()
        return info

    def write_round(self, round_number: int, state: dict[str, torch.Tensor], history: RoundHistory,
                    strategy_state: dict[str, dict[str, torch.Tensor]]) -> None:
        """The global model of a completed round: checkpoints, history, results and provenance.
        The resume point is written last, so that an interruption at any moment resumes from a
        round whose files are all there."""
        folder, sites = self.folder, history.sites
        checkpoint = {
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "hyper_parameters": {"config": self.config.to_dict()},
            "thyronet": plain(self.info(round_number, sites)),
        }
        with atomic_path(folder.best) as tmp:
            torch.save(checkpoint, tmp)
        fingerprint = combined_fingerprint(sites)
        SplitPlan("federated", self.config.split_seed, [Split([], [])], fingerprint).save(folder.split)
        write_text_atomic(self.history_file, json.dumps(nan_to_none({"strategy": self.config.federated.strategy,
                                                                      "rounds": history.rounds, "sites": sites}), indent=1))
        last = history.rounds[-1]
        results = {"model": self.config.model.name, "task": "classify", "federated": True, "round": round_number,
                   "val_pooled": last["pooled"], "val_sites": last["sites"]}
        write_text_atomic(folder.results, json.dumps(nan_to_none(results), indent=1))
        write_text_atomic(folder.provenance, json.dumps(self.provenance(round_number, sites), indent=1))
        with atomic_path(folder.last) as tmp:
            torch.save({**checkpoint, "federation": {"round": round_number, "strategy_state": strategy_state}}, tmp)

    def provenance(self, round_number: int, sites: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The run's provenance: code, versions, machine, and every site's data fingerprint and counts."""
        created = datetime.now(UTC).isoformat(timespec="seconds")
        if self.folder.provenance.is_file():
            created = json.loads(self.folder.provenance.read_text()).get("created", created)
        return {
            "created": created, "updated": datetime.now(UTC).isoformat(timespec="seconds"), "command": sys.argv,
            "seed": self.config.seed, "versions": package_versions(), "git": git_commit(),
            "platform": platform.platform(), "processor": processor(), "data_fingerprint": combined_fingerprint(sites),
            "images": sum(s["images"] for s in sites.values()),
            "federation": {"strategy": self.config.federated.strategy, "rounds_done": round_number,
                           "rounds": self.config.federated.rounds, "local_epochs": self.config.federated.local_epochs},
            "sites": sites,
        }

