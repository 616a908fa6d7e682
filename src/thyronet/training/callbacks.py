"""Callbacks and plugins that make a run reproducible, resumable and safe to interrupt."""

from __future__ import annotations

import csv
import logging
import math
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from thyronet.evaluation.plots import plot_curves
from thyronet.io import atomic_path, open_atomic
from thyronet.runs.layout import RunFolder

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place: a crash or Ctrl-C
    never leaves a truncated ``best.ckpt`` or ``last.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class StepSeed(L.Callback):
    """Reseeds the global RNGs from (seed, global step) before every training batch, so dropout
    in step s is the same whether or not the run was interrupted and resumed before it.
    (Data order and augmentation have their own seeds: see ``EpochSampler``.)"""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        value = self.seed * 1_000_003 + trainer.global_step
        random.seed(value)
        np.random.seed(value % 2**32)
        torch.manual_seed(value)


class EpochHistory(L.Callback):
    """Keeps one row of metrics per epoch; rewrites ``metrics.csv`` and ``curves.png`` atomically.

    Its rows live in the checkpoint, so a resumed run continues the same history.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._lr = float("nan")
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # before the scheduler steps

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch, "lr": self._lr}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))})
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self.write()

    def write(self) -> None:
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with open_atomic(RunFolder(self.run_dir).metrics) as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        plot_curves(self.rows, self.run_dir / "curves.png")

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class ProgressLine(L.Callback):
    """One log line per epoch (readable in a background run's log file, unlike a progress bar)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics

        def value(key: str) -> str:
            return f"{float(metrics[key]):.3f}"

        keys = ("train/loss", "train/acc", "train/pair_acc", "train/dice", "val/loss", "val/acc", "val/auroc", "val/auroc_case",
                "val/dice")
        shown = [k for k in keys if k in metrics and not math.isnan(float(metrics[k]))]
        log.info("epoch %d/%d  %s", trainer.current_epoch + 1, trainer.max_epochs,
                 "  ".join(f"{k} {value(k)}" for k in shown))
