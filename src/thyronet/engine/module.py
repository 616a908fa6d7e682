"""LightningModule: the classifier, its loss, optimiser, schedule and per-epoch metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from ..models import create_model
from .config import RunConfig, config_from_dict
from .metrics import binary_metrics, case_level


class ThyroNetModule(L.LightningModule):
    """Wraps a registry model; logs train/val loss, ACC, F1 and image- and case-level AUROC."""

    def __init__(self, config: dict[str, Any], class_weights: list[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: RunConfig = config_from_dict(config)
        model = self.run_config.model
        self.model = create_model(
            model.name, num_classes=2, in_chans=self.run_config.data.in_chans, weights=model.weights,
            drop_rate=model.drop_rate,
        )
        if self.run_config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        weights = torch.as_tensor(class_weights or [1.0, 1.0], dtype=torch.float32)
        self.register_buffer("class_weights", weights)
        self.val_case_ids: list[str] = []
        self._train_correct = self._train_seen = 0
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.run_config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, weight=self.class_weights)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        logits = self(images)
        loss = self._loss(logits, labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(labels), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels, indices = batch
        logits = self(images).float()
        self._val_outputs.append((logits.detach(), labels, indices))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        logits, labels, indices = (torch.cat(parts) for parts in zip(*self._val_outputs, strict=False))
        self._val_outputs.clear()
        if self.trainer.world_size > 1:  # every process sees the whole validation set
            logits, labels, indices = (self.all_gather(t).flatten(0, 1) for t in (logits, labels, indices))
            keep = np.unique(indices.cpu().numpy(), return_index=True)[1]  # drop sampler padding
            logits, labels, indices = logits[keep], labels[keep], indices[keep]
        loss = self._loss(logits, labels)
        probs = torch.softmax(logits, 1)[:, 1].cpu().numpy()
        y = labels.cpu().numpy()
        image = binary_metrics(y, probs, ci=False)
        case_ids = [self.val_case_ids[i] for i in indices.cpu().tolist()] if self.val_case_ids else [str(i) for i in indices.tolist()]
        _, case_y, case_p = case_level(case_ids, y, probs)
        case = binary_metrics(case_y, case_p, ci=False)
        values = {
            "val/loss": float(loss), "val/acc": image["acc"], "val/f1": image["f1"], "val/auroc": image["auroc"],
            "val/balanced_acc": image["balanced_acc"], "val/auroc_case": case["auroc"],
            "val/balanced_acc_case": case["balanced_acc"],
        }
        # Lightning's checkpoint monitor needs a number; an undefined AUROC ranks as chance.
        values = {k: (0.5 if "auroc" in k and np.isnan(v) else v) for k, v in values.items()}
        for key, value in values.items():
            self.log(key, value, prog_bar=key == "val/auroc_case")

    def configure_optimizers(self):
        train = self.run_config.train
        optimiser = torch.optim.Adam(self.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        if train.scheduler == "none":
            return optimiser
        if train.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, train.epochs))
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=train.step_size, gamma=0.1)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
