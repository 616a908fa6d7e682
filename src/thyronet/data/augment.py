"""Training augmentation (rotation, scaling, mirroring, brightness/contrast, gamma, speckle) and
input normalisation, built from torchvision transforms v2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from thyronet.errors import ThyronetError


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    rotation: float = 15.0  # degrees, either way
    scale_min: float = 0.9
    scale_max: float = 1.1
    hflip: bool = True
    brightness: float = 0.15
    contrast: float = 0.15
    speckle: float = 0.1  # std of multiplicative noise
    # grey levels raised to a power exp(u), u uniform in [-gamma, gamma]: a scanner's or preset's
    # other grey-level curve (0: none)
    gamma: float = 0.0

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise ThyronetError(f"config data.augment.gamma: expected 0 or more, got {self.gamma}")


class SpeckleNoise(torch.nn.Module):
    """Multiplicative Gaussian noise, the usual first-order model of ultrasound speckle."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        noise = 1.0 + self.std * torch.randn_like(image)
        return (image * noise).clamp_(0.0, 1.0)


class RandomGamma(torch.nn.Module):
    """Grey levels in [0, 1] raised to a random power exp(u), u uniform in [-spread, spread]."""

    def __init__(self, spread: float) -> None:
        super().__init__()
        self.spread = spread

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        power = torch.empty(()).uniform_(-self.spread, self.spread).exp()
        return image.clamp(0.0, 1.0) ** power


class Standardise(torch.nn.Module):
    """Each image to zero mean and unit standard deviation over its own pixels: a scanner's gain
    (a scaling of the grey levels) then leaves the input unchanged, a change of contrast nearly."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - image.mean()) / image.std().clamp_min(1e-3)


class RepeatChannels(torch.nn.Module):
    """Greyscale 1xHxW -> CxHxW, for models that take RGB input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.expand(self.channels, -1, -1)


def geometric_transform(augment: AugmentConfig | None) -> v2.Compose:
    """Mirroring, rotation and scaling; applied to an image and its tv_tensors.Mask together."""
    steps: list[torch.nn.Module] = []
    if augment is not None and augment.enabled:
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
        steps.append(v2.RandomAffine(degrees=augment.rotation, scale=(augment.scale_min, augment.scale_max)))
    return v2.Compose(steps or [v2.Identity()])


def photometric_transform(augment: AugmentConfig | None, in_chans: int, mean: float | None, std: float | None) -> v2.Compose:
    """uint8 tensor 1xHxW -> normalised float in_chans x H x W (by ``mean`` and ``std``, or by the
    image's own when they are None), with brightness/contrast, gamma and speckle when augmenting
    (image only: a mask never goes through this)."""
    enabled = augment is not None and augment.enabled
    steps: list[torch.nn.Module] = []
    if enabled and (augment.brightness or augment.contrast):
        steps.append(v2.ColorJitter(brightness=augment.brightness, contrast=augment.contrast))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if enabled and augment.gamma:
        steps.append(RandomGamma(augment.gamma))
    if enabled and augment.speckle:
        steps.append(SpeckleNoise(augment.speckle))
    steps.append(Standardise() if mean is None else v2.Normalize([mean], [std]))
    if in_chans != 1:
        steps.append(RepeatChannels(in_chans))
    return v2.Compose(steps)


def build_transform(
    augment: AugmentConfig | None, in_chans: int, mean: float | None, std: float | None
) -> v2.Compose:
    """uint8 tensor 1xHxW -> normalised float tensor in_chans x H x W (augmented if given)."""
    return v2.Compose([geometric_transform(augment), photometric_transform(augment, in_chans, mean, std)])
