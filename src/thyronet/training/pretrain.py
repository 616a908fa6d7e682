"""Self-supervised pretraining of a classifier's encoder on ultrasound images, labels unused.

SimCLR (Chen et al. 2020): each image gives two views that differ in what should not decide a
diagnosis (where exactly the box around the nodule sits and how large it is, gain, contrast,
speckle, orientation), and the encoder, through a small projection head, learns to tell which
views come from the same image. The views are cut exactly as the classifier's inputs are (the
config's region of interest and preprocessing), so the encoder learns on the kind of picture it
will later classify. The result, ``encoder.pt``, is what ``model.weights`` takes.

What to pretrain on matters for honest figures: images whose cases a cross-validation scores
should not be seen, not even unlabelled, so ``thyronet pretrain`` takes every image of some
sources (another organ's ultrasound) and only the unlabelled images of others (DDTI's cases
without a TI-RADS score).

Folder layout: ``config.yaml provenance.json metrics.csv curves.png checkpoints/last.ckpt
encoder.pt``; running the same command again resumes an interrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thyronet.data.augment import build_transform
from thyronet.data.dataset import UltrasoundDataset
from thyronet.data.records import ImageRecord
from thyronet.errors import ThyronetError
from thyronet.inference.networks import build_classifier
from thyronet.io import atomic_path, write_text_atomic
from thyronet.models.weights import HEADS
from thyronet.runs.config import RunConfig, config_from_dict, dump_config
from thyronet.runs.layout import RunFolder
from thyronet.training.datamodule import EpochSampler, expert_locator
from thyronet.training.losses import contrastive_loss
from thyronet.training.optim import configure_optimizers, steps_per_epoch
from thyronet.training.provenance import provenance
from thyronet.training.train import build_trainer, run_trainer

log = logging.getLogger(__name__)
ENCODER_FILE = "encoder.pt"


class TwoViews(Dataset):
    """Two independently augmented views of each item of an :class:`UltrasoundDataset`."""

    def __init__(self, views: UltrasoundDataset) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        seeds = (None, None) if seed is None else (seed, seed + 1)
        first, second = (self.views[(index, s)].image for s in seeds)
        return first, second


def pretraining_config(config: RunConfig) -> RunConfig:
    """The run config with the ``pretrain`` section's schedule in ``train`` (what the trainer and
    optimiser read), and the classification-only switches off."""
    settings = config.pretrain
    train = dataclasses.replace(
        config.train, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
        mixup=0.0, label_smoothing=0.0, ema_decay=None, early_stopping_patience=None,
    )
    return dataclasses.replace(config, train=train)


def view_dataset(config: RunConfig, records: Sequence[ImageRecord]) -> UltrasoundDataset:
    """The images as the classifier sees them, with wider box jitter and stronger gain changes."""
    data, settings = config.data, config.pretrain
    augment = dataclasses.replace(data.augment, enabled=True, brightness=max(data.augment.brightness, settings.photometric),
                                  contrast=max(data.augment.contrast, settings.photometric))
    transform = build_transform(augment, data.in_chans, data.mean, data.std)
    region = dataclasses.replace(data.roi, jitter=settings.jitter)
    locate = None if data.roi.mode == "none" else expert_locator  # no outline: the scan area
    return UltrasoundDataset(records, data.preprocess, transform, locate, region, jitter_boxes=True)


class ContrastiveModule(L.LightningModule):
    """The classifier's encoder under a projection head, trained with the NT-Xent loss."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: RunConfig = config_from_dict(config)
        self.model = build_classifier(self.run_config, self.run_config.model.weights)
        if not hasattr(self.model, "forward_features"):
            raise ThyronetError(f"model {self.run_config.model.name}: pretraining needs a ResNet-family encoder")
        width = self.model.num_features
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                       nn.Linear(width, self.run_config.pretrain.projection_dim))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        views = torch.cat(batch)
        embeddings = self.projector(self.model.forward_features(views))
        loss, accuracy = contrastive_loss(embeddings, self.run_config.pretrain.temperature)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(views))
        self.log("train/pair_acc", accuracy, on_step=False, on_epoch=True, batch_size=len(views))
        return loss

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights without the task heads (which the classifier trains anew)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k.split(".")[0] not in HEADS}

    def configure_optimizers(self):
        return configure_optimizers(self.parameters(), self.run_config.train, steps_per_epoch(self.trainer))


def pretrain(config: RunConfig, records: Sequence[ImageRecord], out_dir: Path) -> Path | None:
    """Pretrain (or finish pretraining) in ``out_dir``; the encoder file, or None if interrupted."""
    if len(records) < 2 * config.pretrain.batch_size:
        raise ThyronetError(f"pretraining needs at least {2 * config.pretrain.batch_size} images "
                            f"(two batches of pretrain.batch_size), got {len(records)}")
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    folder, settings = RunFolder(out_dir), dump_config(config)
    resume = folder.last.is_file()
    if resume:
        if folder.config.read_text() != settings:
            raise ThyronetError(f"{out_dir}: was started with another config ({folder.config}); "
                                "run the same command to resume it, or use a new --out folder")
        log.info("resuming %s from its last checkpoint", out_dir)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder.config, settings)
        write_text_atomic(folder.provenance, json.dumps(provenance(config.seed, records), indent=1))
    log.info("pretraining %s on %d images, %d epochs, run folder %s", config.model.name, len(records),
             config.pretrain.epochs, out_dir)
    L.seed_everything(config.seed, verbose=False)
    run_config = pretraining_config(config)
    pairs = TwoViews(view_dataset(config, records))
    loader = DataLoader(pairs, batch_size=run_config.train.batch_size, drop_last=True,
                        sampler=EpochSampler(np.zeros(len(pairs), dtype=int), config.seed),
                        num_workers=config.data.num_workers, persistent_workers=config.data.num_workers > 0)
    module = ContrastiveModule(run_config.to_dict())
    trainer = build_trainer(run_config, out_dir, (), monitor=None)
    if not run_trainer(trainer, out_dir, module, resume, train_dataloaders=loader):
        log.warning("interrupted: run the same command again to continue from the last finished epoch")
        return None
    encoder = out_dir / ENCODER_FILE
    with atomic_path(encoder) as tmp:
        torch.save(module.encoder_state(), tmp)
    log.info("encoder weights: %s (use them with --set model.weights=%s)", encoder, encoder)
    return encoder
