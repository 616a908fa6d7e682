"""LightningDataModule: case-split datasets, the epoch-seeded sampler, the loaders."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..data.augment import build_transform
from ..data.dataset import UltrasoundDataset
from ..data.records import Collection
from ..data.splits import Split
from ..errors import ThyronetError
from .config import RunConfig

log = logging.getLogger(__name__)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, augmentation seed)`` pairs in an order fixed by ``seed`` and the epoch:
    shuffled, or class-balanced with replacement.

    Each item's augmentation seed also comes from (seed, epoch, position), so a resumed run sees
    exactly the batches and augmentations an uninterrupted run would, however the loader
    prefetches and whatever other code draws from the global RNG.
    """

    def __init__(self, labels: np.ndarray, seed: int, balanced: bool = False) -> None:
        self.labels = labels
        self.seed = seed
        self.balanced = balanced
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        n = len(self.labels)
        if self.balanced:
            counts = np.bincount(self.labels, minlength=2)
            weights = torch.as_tensor(1.0 / counts[self.labels], dtype=torch.double)
            order = torch.multinomial(weights, n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        item_seeds = torch.randint(0, 2**62, (n,), generator=generator)
        return iter(zip(order.tolist(), item_seeds.tolist(), strict=False))


class UltrasoundDataModule(L.LightningDataModule):
    """Train/val/test datasets of one split; only labelled images are used."""

    def __init__(self, config: RunConfig, collection: Collection, split: Split) -> None:
        super().__init__()
        self.config = config
        self.collection = collection
        self.split = split
        self.datasets: dict[str, UltrasoundDataset] = {}

    def dataset(self, side: str) -> UltrasoundDataset:
        if side not in self.datasets:
            data = self.config.data
            records = [r for r in self.collection.subset(getattr(self.split, side)) if r.label is not None]
            if not records:
                raise ThyronetError(f"the {side} split has no labelled images")
            augment = data.augment if side == "train" else None
            transform = build_transform(augment, data.in_chans, data.mean, data.std)
            log.info("preparing %d %s images ...", len(records), side)
            self.datasets[side] = UltrasoundDataset(records, data.preprocess, transform)
        return self.datasets[side]

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequencies of the training images, normalised to mean 1."""
        counts = np.bincount(self.dataset("train").labels, minlength=2).astype(float)
        weights = counts.sum() / (2 * np.maximum(counts, 1))
        return torch.as_tensor(weights, dtype=torch.float32)

    def _loader(self, side: str, sampler: Sampler | None = None) -> DataLoader:
        dataset = self.dataset(side)
        batch_size = self.config.train.batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            # a last training batch of one image breaks BatchNorm; the order changes every epoch,
            # so no image is left out for good
            drop_last=side == "train" and len(dataset) > batch_size,
            num_workers=self.config.data.num_workers,
            persistent_workers=self.config.data.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        balanced = self.config.train.imbalance == "sampler"
        sampler = EpochSampler(self.dataset("train").labels, self.config.seed, balanced)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")
