"""Nodule segmentation networks: U-Net decoders (Ronneberger et al., MICCAI 2015) over an encoder.

Two encoders, chosen between by measurement (docs/results.md, "Finding the nodule"):

* ``unet``: the classic U-Net encoder of double 3x3 convolutions, kept narrow (16-256 channels)
  so that it trains in minutes and segments an image in milliseconds on two CPU cores;
* ``unet_x4``: the ThyroNet-X4 encoder (stem and four bottleneck stages) under the same decoder,
  so that one backbone could serve both tasks.

Both return one logit per pixel at the input's resolution (sigmoid -> nodule probability).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thyronet.models.resnet import ResNet


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class PlainEncoder(nn.Module):
    """The U-Net contracting path: a ConvBlock per scale, 2x2 max pooling between scales."""

    def __init__(self, in_chans: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.widths = list(widths)
        self.stages = nn.ModuleList()
        previous = in_chans
        for width in widths:
            self.stages.append(ConvBlock(previous, width))
            previous = width

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features from the finest (input resolution) to the coarsest scale."""
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x if index == 0 else F.max_pool2d(x, 2))
            features.append(x)
        return features


class ResNetEncoder(nn.Module):
    """A classifier ResNet's stem and stages as a feature pyramid (strides 2, 4, 8, 16, 32)."""

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)
        self.maxpool = resnet.maxpool
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        self.widths = [64] + [stage[-1].conv3.out_channels for stage in self.stages]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        features = [x]
        x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class UNet(nn.Module):
    """A U-Net decoder over any encoder that returns a list of features, finest first.

    Each decoder step upsamples (bilinear) the coarser map, concatenates the skip features of the
    next finer scale and applies a ConvBlock; a 1x1 convolution gives the logits, which are
    resized to the input when the finest features are coarser than the input (ResNet encoders).
    """

    def __init__(self, encoder: nn.Module, decoder_widths: Sequence[int], num_classes: int = 1) -> None:
        super().__init__()
        self.encoder = encoder
        widths = encoder.widths
        if len(decoder_widths) != len(widths) - 1:
            raise ValueError(f"need {len(widths) - 1} decoder widths for {len(widths)} encoder scales")
        self.decoder = nn.ModuleList()
        previous = widths[-1]
        for skip, width in zip(reversed(widths[:-1]), decoder_widths, strict=True):
            self.decoder.append(ConvBlock(previous + skip, width))
            previous = width
        self.head = nn.Conv2d(previous, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        features = self.encoder(x)
        y = features[-1]
        for block, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        logits = self.head(y)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


def unet(in_chans: int = 1, num_classes: int = 1, widths: Sequence[int] = (16, 32, 64, 128, 256), **_: object) -> UNet:
    """The narrow plain U-Net: 5 scales, 16-256 channels (1.9 M parameters)."""
    encoder = PlainEncoder(in_chans, widths)
    return UNet(encoder, list(reversed(widths[:-1])), num_classes)


def unet_x4(in_chans: int = 1, num_classes: int = 1, **_: object) -> UNet:
    """U-Net decoder (256-128-64-32 channels) over the ThyroNet-X4 encoder."""
    from thyronet.models.resnet import thyronet_x4

    return UNet(ResNetEncoder(thyronet_x4(in_chans=in_chans)), (256, 128, 64, 32), num_classes)
