"""The optimiser and learning-rate schedule every task trains with (Adam, as in the paper, or AdamW)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from torch import nn

from thyronet.runs.config import TrainConfig


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimiser steps in one epoch of this trainer's run."""
    return max(1, int(trainer.estimated_stepping_batches) // max(1, trainer.max_epochs or 1))


# top-level submodules that are task heads (or a segmenter's decoder): they learn at train.lr,
# the rest (the encoder) at train.lr x train.encoder_lr_scale
HEAD_MODULES = ("fc", "classifier", "head", "descriptor_heads", "tirads_head", "decoder", "segmentation_head")


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The top-level submodules of ``model`` that are not task heads."""
    return [module for name, module in model.named_children() if name not in HEAD_MODULES]


def parameter_groups(model: nn.Module, train: TrainConfig) -> Iterable[torch.nn.Parameter] | list[dict[str, Any]]:
    """The model's parameters, in two groups when the encoder learns slower than the heads."""
    if train.encoder_lr_scale == 1:
        return model.parameters()
    encoder = {id(p) for module in encoder_modules(model) for p in module.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in encoder], "lr": train.lr * train.encoder_lr_scale},
            {"params": [p for p in model.parameters() if id(p) not in encoder]}]


def freeze_encoder_norm(model: nn.Module) -> None:
    """Put the encoder's batch-norm layers in eval mode: they normalise with their pretrained
    statistics and leave them unchanged (their scale and shift still learn)."""
    for module in encoder_modules(model):
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()


def configure_optimizers(parameters: Iterable[torch.nn.Parameter] | list[dict[str, Any]], train: TrainConfig,
                         epoch_steps: int = 1):
    """Adam (the paper's), AdamW or SGD; an optional linear warm-up over ``train.warmup_epochs``, then
    cosine decay over the rest of the run, step decay (x0.1) or a constant rate. The schedule moves
    every optimiser step, so that a warm-up shorter than an epoch works too."""
    optimiser: torch.optim.Optimizer
    if train.optimizer == "sgd":
        optimiser = torch.optim.SGD(parameters, lr=train.lr, momentum=0.9, nesterov=True, weight_decay=train.weight_decay)
    else:
        optimiser_class = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
        optimiser = optimiser_class(parameters, lr=train.lr, weight_decay=train.weight_decay)
    epoch_steps = max(1, epoch_steps)
    total = max(1, train.epochs * epoch_steps)
    warmup = min(total - 1, round(train.warmup_epochs * epoch_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        if train.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        if train.scheduler == "step":
            return 0.1 ** (step // (train.step_size * epoch_steps))
        return 1.0

    if train.scheduler == "none" and warmup == 0:
        return optimiser
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EncoderRecipe:
    """For a LightningModule whose network is ``self.model`` and config ``self.run_config``: the
    optimiser and schedule of ``train.*``, the encoder at ``train.encoder_lr_scale`` of the rate,
    and its batch-norm statistics kept with ``train.freeze_norm``."""

    def configure_optimizers(self):
        return configure_optimizers(parameter_groups(self.model, self.run_config.train), self.run_config.train,
                                    steps_per_epoch(self.trainer))

    def on_train_epoch_start(self) -> None:
        if self.run_config.train.freeze_norm:  # Lightning sets train mode before each epoch
            freeze_encoder_norm(self.model)
