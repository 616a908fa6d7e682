"""Torch Datasets over image records: decode and preprocess once, augment every epoch.

* :class:`UltrasoundDataset` (classification): items are :class:`Sample`; the input is the scan
  area or a region of interest around a nodule box.
* :class:`SegmentationDataset`: items ``(input, mask, index)``, image and mask augmented together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from thyronet.data.augment import AugmentConfig, geometric_transform, photometric_transform
from thyronet.data.imageio import read_image
from thyronet.data.preprocess import Box, PreprocessConfig, preprocess
from thyronet.data.records import ImageRecord
from thyronet.data.region import RegionConfig, crop_region
from thyronet.data.vocabulary import descriptor_targets, tirads_target

T = TypeVar("T")
Locator = Callable[[ImageRecord, np.ndarray], Box | None]  # (record, frame) -> the nodule's box


class Sample(NamedTuple):
    """One classification item; batches keep the field names (``case_id`` becomes a list), so the
    case each image belongs to travels with it to the case-level metrics."""

    image: torch.Tensor
    label: int  # -1: unlabelled
    index: int  # position in the dataset's records
    descriptors: torch.Tensor  # one class index per descriptor, -1 where missing
    case_id: str
    tirads: int = -1  # the TI-RADS category's index in TIRADS_LEVELS, -1 where missing


def load_prepared(
    record: ImageRecord, config: PreprocessConfig, region: Box | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode and preprocess one record (image and aligned outline mask)."""
    return preprocess(read_image(record.path, record.frame), config, record.outlines, region)


def seeded(seed: int | None, draw: Callable[[], T]) -> T:
    """Run ``draw`` under its own torch seed when one is given, leaving the global RNG untouched."""
    if seed is None:
        return draw()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return draw()


class UltrasoundDataset(Dataset):
    """Items are :class:`Sample`; unlabelled records get label -1 and a missing descriptor -1.

    Without ``locate`` the input is the scan area. With it (record, frame -> the nodule's box in
    frame pixels, or None where unknown) the input is a region of interest cut per ``region``:
    re-jittered on every draw when ``jitter_boxes`` is set (training), fixed otherwise.
    Deterministic work runs once per image and is kept in memory (an epoch does not re-decode JPEGs).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        preprocess_config: PreprocessConfig,
        transform: Callable[[torch.Tensor], torch.Tensor],
        locate: Locator | None = None,
        region: RegionConfig = RegionConfig(),
        jitter_boxes: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.preprocess_config = preprocess_config
        self.region = region
        self.jitter_boxes = jitter_boxes and locate is not None
        self.boxes: list[Box | None] = []
        self.images: list[np.ndarray] = []  # frames when jittering, else prepared inputs
        for index, record in enumerate(self.records):
            frame = read_image(record.path, record.frame)
            self.boxes.append(locate(record, frame) if locate else None)
            if self.jitter_boxes:
                self.images.append(frame)
            else:
                crop = crop_region(self.boxes[index], frame.shape, region)
                self.images.append(preprocess(frame, preprocess_config, region=crop)[0])
            if progress:
                progress(index + 1, len(self.records))
        self.descriptors = torch.tensor([descriptor_targets(dict(r.attributes)) for r in self.records], dtype=torch.long)
        self.tirads = [tirads_target(dict(r.attributes)) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([-1 if r.label is None else r.label for r in self.records])

    def _input(self, index: int, seed: int | None) -> np.ndarray:
        if not self.jitter_boxes:
            return self.images[index]
        frame = self.images[index]
        rng = np.random.default_rng(seed)
        crop = crop_region(self.boxes[index], frame.shape, self.region, rng)
        return preprocess(frame, self.preprocess_config, region=crop)[0]

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """``key`` is an index, or ``(index, seed)`` to make the item's augmentation reproducible."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = torch.from_numpy(self._input(index, seed)).unsqueeze(0)
        tensor = seeded(seed, lambda: self.transform(image))
        record = self.records[index]
        return Sample(tensor, -1 if record.label is None else record.label, index, self.descriptors[index], record.case_id,
                      self.tirads[index])


class SegmentationDataset(Dataset):
    """Items are ``(tensor, mask, index)``: the scan area and its expert outline mask (float 0/1,
    1xHxW), with mirroring/rotation/scaling applied to both and photometric noise to the image."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        preprocess_config: PreprocessConfig,
        augment: AugmentConfig | None,
        in_chans: int,
        mean: float | None,
        std: float | None,
    ) -> None:
        self.records = list(records)
        self.geometric = geometric_transform(augment)
        self.photometric = photometric_transform(augment, in_chans, mean, std)
        self.items: list[tuple[np.ndarray, np.ndarray]] = []
        for record in self.records:
            image, mask = load_prepared(record, preprocess_config)
            self.items.append((image, np.zeros_like(image) if mask is None else mask))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, mask = (torch.from_numpy(a).unsqueeze(0) for a in self.items[index])

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            moved_image, moved_mask = self.geometric(tv_tensors.Image(image), tv_tensors.Mask(mask))
            return self.photometric(moved_image.as_subclass(torch.Tensor)), moved_mask.as_subclass(torch.Tensor)

        tensor, moved = seeded(seed, draw)
        return tensor, (moved > 127).float(), index
