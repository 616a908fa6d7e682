"""The segmentation task: its LightningModule (Dice + BCE) and its evaluation on frames."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from thyronet.models import create_model
from thyronet.runs.config import RunConfig, config_from_dict
from thyronet.training.losses import dice_bce_loss
from thyronet.training.optim import EncoderRecipe


def batch_dice(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Hard Dice per image at probability 0.5 (1 when prediction and truth are both empty)."""
    predicted = (logits > 0).float().flatten(1)
    truth = masks.flatten(1)
    total = predicted.sum(1) + truth.sum(1)
    overlap = 2 * (predicted * truth).sum(1)
    return torch.where(total > 0, overlap / total.clamp(min=1), torch.ones_like(total))


class SegmentationModule(EncoderRecipe, L.LightningModule):
    """Wraps a registry segmenter; logs Dice + BCE loss and Dice on the model's input grid."""

    monitor = "val/dice"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: RunConfig = config_from_dict(config)
        self.model = create_model(self.run_config.model.name, num_classes=1, in_chans=self.run_config.data.in_chans,
                                  weights=self.run_config.model.weights, pretrained=self.run_config.model.pretrained)
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, masks, _ = batch
        logits = self(images)
        loss = dice_bce_loss(logits, masks)
        size = len(images)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/dice", batch_dice(logits.detach(), masks).mean(), on_step=False, on_epoch=True,
                 batch_size=size, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, masks, _ = batch
        logits = self(images).float()
        self._val.append((dice_bce_loss(logits, masks).detach() * len(images), batch_dice(logits, masks)))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        losses, dices = zip(*self._val, strict=True)
        self._val.clear()
        dice_values = torch.cat(dices)
        self.log("val/loss", torch.stack(losses).sum() / len(dice_values), sync_dist=True)
        self.log("val/dice", dice_values.mean(), prog_bar=True, sync_dist=True)
