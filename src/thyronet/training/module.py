"""LightningModule: the classifier, its loss, optimiser, schedule and per-epoch metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from thyronet.data.dataset import Sample
from thyronet.data.vocabulary import DESCRIPTORS
from thyronet.evaluation.metrics import binary_metrics, case_level
from thyronet.evaluation.multiclass import multiclass_metrics
from thyronet.inference.networks import build_classifier
from thyronet.runs.config import RunConfig, config_from_dict
from thyronet.training.losses import descriptor_loss, ordinal_loss
from thyronet.training.optim import EncoderRecipe

log = logging.getLogger(__name__)


def _gather_strings(values: list[str], world_size: int) -> list[str]:
    """Every process's list, concatenated in rank order (as ``all_gather`` stacks tensors)."""
    gathered: list[list[str] | None] = [None] * world_size
    torch.distributed.all_gather_object(gathered, values)
    return [value for part in gathered for value in part or []]


class ThyroNetModule(EncoderRecipe, L.LightningModule):
    """Wraps a registry model; logs train/val loss, ACC, F1 and image- and case-level AUROC (with
    ``data.classes`` of more than two: macro-F1 and the macro one-vs-rest AUROC)."""

    monitor = "val/auroc_case"

    def __init__(self, config: dict[str, Any], class_weights: list[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: RunConfig = config_from_dict(config)
        self.model = build_classifier(self.run_config, self.run_config.model.weights)
        self.auxiliary_heads = self.run_config.model.descriptor_heads or self.run_config.model.tirads_head
        if self.run_config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        weights = torch.as_tensor(class_weights or [1.0] * len(self.run_config.class_names), dtype=torch.float32)
        self.register_buffer("class_weights", weights)
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.run_config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, weight=self.class_weights, label_smoothing=label_smoothing)

    def training_loss(self, batch: Sample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The training loss of a batch (mixed up when ``train.mixup`` is set), the malignancy
        logits, and the weighted loss of the auxiliary heads (descriptors, TI-RADS) where the
        model has them."""
        train = self.run_config.train
        images, labels, descriptors = batch.image, batch.label, batch.descriptors
        weight, order = 1.0, None
        if train.mixup > 0:  # the batch against a shuffled copy of itself
            weight = float(torch.distributions.Beta(train.mixup, train.mixup).sample())
            order = torch.randperm(len(labels), device=labels.device)
            images = weight * images + (1 - weight) * images[order]

        def mixed(loss_of: Callable[[torch.Tensor], torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
            return loss_of(targets) if order is None else weight * loss_of(targets) + (1 - weight) * loss_of(targets[order])

        if train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        extra = None
        if self.auxiliary_heads:
            logits, outputs = self.model.forward_with_descriptors(images)
            extra = logits.new_zeros((), dtype=torch.float32)
            if self.run_config.model.descriptor_heads:
                extra = extra + train.descriptor_loss_weight * mixed(
                    lambda targets: descriptor_loss(outputs, targets, DESCRIPTORS), descriptors)
            if self.run_config.model.tirads_head:
                extra = extra + train.tirads_loss_weight * mixed(
                    lambda targets: ordinal_loss(outputs["tirads"], targets), batch.tirads)
        else:
            logits = self.model(images)
        loss = mixed(lambda targets: self._loss(logits, targets, train.label_smoothing), labels)
        if extra is not None:
            loss = loss + extra
        return loss, logits, extra

    def training_step(self, batch: Sample, batch_idx: int) -> torch.Tensor:
        loss, logits, extra = self.training_loss(batch)
        labels = batch.label
        if extra is not None:
            self.log("train/auxiliary_loss", extra, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(labels), sync_dist=True)
        return loss

    def validation_step(self, batch: Sample, batch_idx: int) -> None:
        logits = self(batch.image).float()
        self._val_outputs.append((logits.detach(), batch.label, batch.index, list(batch.case_id)))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        parts = list(zip(*self._val_outputs, strict=True))
        logits, labels, indices = (torch.cat(p) for p in parts[:3])
        case_ids = [case for batch in parts[3] for case in batch]
        self._val_outputs.clear()
        if self.trainer.world_size > 1:  # every process sees the whole validation set
            logits, labels, indices = (self.all_gather(t).flatten(0, 1) for t in (logits, labels, indices))
            case_ids = _gather_strings(case_ids, self.trainer.world_size)
            keep = np.unique(indices.cpu().numpy(), return_index=True)[1]  # drop sampler padding
            logits, labels = logits[keep], labels[keep]
            case_ids = [case_ids[i] for i in keep]
        loss = self._loss(logits, labels)
        image, case = self._scores(labels.cpu().numpy(), torch.softmax(logits, 1).cpu().numpy(), case_ids)
        values = {
            "val/loss": float(loss), "val/acc": image["acc"], "val/f1": image["f1"], "val/auroc": image["auroc"],
            "val/balanced_acc": image["balanced_acc"], "val/auroc_case": case["auroc"],
            "val/balanced_acc_case": case["balanced_acc"],
        }
        # Lightning's checkpoint monitor needs a number; an undefined AUROC ranks as chance.
        values = {k: (0.5 if "auroc" in k and np.isnan(v) else v) for k, v in values.items()}
        for key, value in values.items():
            self.log(key, value, prog_bar=key == "val/auroc_case")

    def _scores(self, labels: np.ndarray, probs: np.ndarray, case_ids: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Image- and case-level metrics of softmax outputs (N, classes), without intervals."""
        config = self.run_config
        if config.multiclass:
            def score(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
                return multiclass_metrics(y, p, config.class_names, ci=False)
        else:
            def score(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
                return binary_metrics(y, p[:, 1], ci=False)
        _, case_labels, case_probs = case_level(case_ids, labels, probs)
        return score(labels, probs), score(case_labels, case_probs)
