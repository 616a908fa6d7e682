"""A torch Dataset over image records: decode and preprocess once, augment every epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .imageio import read_image
from .preprocess import PreprocessConfig, preprocess
from .records import ImageRecord


def load_prepared(record: ImageRecord, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode and preprocess one record (image and aligned outline mask)."""
    return preprocess(read_image(record.path, record.frame), config, record.outlines)


class UltrasoundDataset(Dataset):
    """Items are ``(tensor, label, index)``; unlabelled records get label -1.

    Deterministic preprocessing runs once per image and is kept in memory (an epoch does not
    re-decode JPEGs); only the random augmentation runs per item.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        preprocess_config: PreprocessConfig,
        transform: Callable[[torch.Tensor], torch.Tensor],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.images: list[np.ndarray] = []
        for index, record in enumerate(self.records):
            self.images.append(load_prepared(record, preprocess_config)[0])
            if progress:
                progress(index + 1, len(self.records))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if r.label is None else r.label for r in self.records])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        """``key`` is an index, or ``(index, seed)`` to make the item's augmentation reproducible."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = torch.from_numpy(self.images[index]).unsqueeze(0)
        if seed is None:
            tensor = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                tensor = self.transform(image)
        label = self.records[index].label
        return tensor, -1 if label is None else label, index
