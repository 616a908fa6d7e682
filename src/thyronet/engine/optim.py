"""The optimiser and learning-rate schedule every task trains with (Adam, as in the paper)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .config import TrainConfig


def configure_optimizers(parameters: Iterable[torch.nn.Parameter], train: TrainConfig):
    """Adam with weight decay; cosine decay over the run, step decay (x0.1) or none."""
    optimiser = torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay)
    if train.scheduler == "none":
        return optimiser
    if train.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, train.epochs))
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=train.step_size, gamma=0.1)
    return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
