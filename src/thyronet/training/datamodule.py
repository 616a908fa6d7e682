"""LightningDataModule: case-split datasets, the epoch-seeded sampler, the loaders."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from thyronet.data.augment import build_transform
from thyronet.data.dataset import Locator, SegmentationDataset, UltrasoundDataset
from thyronet.data.preprocess import Box
from thyronet.data.records import Collection, ImageRecord
from thyronet.data.region import expert_box
from thyronet.data.splits import Split
from thyronet.errors import ThyronetError
from thyronet.inference.segmenter import Segmenter
from thyronet.runs.config import RunConfig

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


def expert_locator(record: ImageRecord, frame: np.ndarray) -> Box | None:
    return expert_box(frame.shape, record.outlines)


class UltrasoundDataModule(L.LightningDataModule):
    """Train/val/test datasets of one split.

    Classification uses the labelled images; with a region of interest, training crops around
    the expert outline (jittered), validation and test around the expert or the predicted box.
    Segmentation uses every outlined image: the split's cases, plus the unlabelled cases (which
    no classification split holds) in training.
    """

    def __init__(self, config: RunConfig, collection: Collection, split: Split, segmenter: Segmenter | None = None) -> None:
        super().__init__()
        self.config = config
        self.collection = collection
        self.split = split
        self.segmenter = segmenter
        self.datasets: dict[str, UltrasoundDataset | SegmentationDataset] = {}

    def records(self, side: str) -> list[ImageRecord]:
        cases = getattr(self.split, side)
        if self.config.task == "segment":
            if side == "train":
                labelled = set(self.split.train) | set(self.split.val) | set(self.split.test)
                cases = list(cases) + [c for c, label in self.collection.case_labels().items() if label is None and c not in labelled]
            records = [r for r in self.collection.subset(cases) if r.outlines]
            if not records:
                raise ThyronetError(f"the {side} split has no images with a nodule outline to segment")
            return records
        records = [r for r in self.collection.subset(cases) if r.label is not None]
        if not records:
            raise ThyronetError(f"the {side} split has no labelled images")
        return records

    def locator(self, side: str) -> Locator | None:
        """Where the nodule is, for cutting the region of interest (None: the whole scan area)."""
        mode = self.config.data.roi.mode
        if mode == "none":
            return None
        if side == "train" or mode == "expert":
            return expert_locator
        if self.segmenter is None:
            raise ThyronetError("data.roi.mode=predicted needs a segmenter (data.roi.segmenter)")
        return lambda record, frame: self.segmenter(frame).box

    def dataset(self, side: str) -> UltrasoundDataset | SegmentationDataset:
        if side not in self.datasets:
            data = self.config.data
            records = self.records(side)
            augment = data.augment if side == "train" else None
            log.info("preparing %d %s images ...", len(records), side)
            if self.config.task == "segment":
                self.datasets[side] = SegmentationDataset(records, data.preprocess, augment, data.in_chans, data.mean, data.std)
            else:
                transform = build_transform(augment, data.in_chans, data.mean, data.std)
                self.datasets[side] = UltrasoundDataset(records, data.preprocess, transform, self.locator(side), data.roi,
                                                        jitter_boxes=side == "train")
        return self.datasets[side]

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequencies of the training images, normalised to mean 1."""
        classes = len(self.config.class_names)
        counts = np.bincount(self.dataset("train").labels, minlength=classes).astype(float)
        weights = counts.sum() / (classes * np.maximum(counts, 1))
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
        train = self.dataset("train")
        balanced = self.config.train.imbalance == "sampler" and self.config.task == "classify"
        labels = train.labels if isinstance(train, UltrasoundDataset) else np.zeros(len(train), int)
        sampler = EpochSampler(labels, self.config.seed, balanced)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")
