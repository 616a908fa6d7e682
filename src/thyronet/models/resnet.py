"""ThyroNet-X4 Genesis and its ablations, in the style of torchvision's ``resnet.py``.

The paper (Wang, Niu et al., Sci. Rep. 2025) describes its change to the ResNet34 baseline as:
expansion factor 1 -> 4 (bottleneck blocks), grouped convolutions, a 5x5 kernel in the block's
second convolution, and "residual and dense connections". Its Fig. 7 is not public, so
docs/architecture.md records the reading chosen here:

* ``thyronet_x4``: ResNet34 stage depths [3, 4, 6, 3] with bottleneck blocks (expansion 4) whose
  spatial convolution is 5x5 and grouped with cardinality 32 and width 4 per group, i.e. a
  ResNeXt-50 32x4d with 5x5 kernels. Residual connections as in ResNet.
* ``dense=True``: the "dense connections" read as a dense feature aggregation: the globally
  pooled outputs of all four stages are concatenated before the classifier (DenseNet-style
  reuse of earlier features), rather than only the last stage's.

``descriptor_classes`` (our addition) puts one linear head per TI-RADS descriptor beside the
malignancy head, on the same pooled features (multi-task learning). ``forward`` still returns the
malignancy logits alone, so Grad-CAM and ONNX export see one classifier;
``forward_with_descriptors`` returns both. ``tirads_levels`` (ours too) adds an ordinal head on the
TI-RADS category the malignancy label is cut from (:class:`OrdinalHead`), and ``channels`` narrows
or widens every stage (64 in torchvision: the first stage's width, each later stage doubling it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn


def conv_kxk(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A 'same'-padded convolution without bias (a BatchNorm follows)."""
    return nn.Conv2d(
        in_planes, out_planes, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two spatial convolutions; ``kernel_size``/``groups`` apply to the second (the paper's "Block")."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        kernel_size: int = 3,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        del base_width  # a BasicBlock's width is its planes; the argument keeps one block signature
        self.conv1 = conv_kxk(inplanes, planes, 3, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv_kxk(planes, planes, kernel_size, groups=groups)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, kxk grouped spatial convolution (stride here, as torchvision's V1.5), 1x1 expand."""

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        kernel_size: int = 3,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv_kxk(width, width, kernel_size, stride, groups)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet whose block, kernel size, cardinality and head (last stage or dense) are parameters."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 2,
        in_chans: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
        kernel_size: int = 3,
        dense: bool = False,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
        descriptor_classes: Mapping[str, int] | None = None,
        tirads_levels: int = 0,
        channels: int = 64,
    ) -> None:
        super().__init__()
        self.inplanes = channels
        self.groups = groups
        self.base_width = width_per_group
        self.kernel_size = kernel_size
        self.dense = dense
        self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, channels, layers[0])
        self.layer2 = self._make_layer(block, channels * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, channels * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, channels * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        stage_widths = [channels * 2**i * block.expansion for i in range(4)]
        self.num_features = sum(stage_widths) if dense else stage_widths[-1]
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        if zero_init_residual:
            for module in self.modules():
                last_bn = module.bn3 if isinstance(module, Bottleneck) else getattr(module, "bn2", None)
                if isinstance(module, (BasicBlock, Bottleneck)) and last_bn is not None:
                    nn.init.constant_(last_bn.weight, 0)
        # built last, so that adding heads leaves the backbone's initialisation (same seed) unchanged
        self.descriptor_heads = nn.ModuleDict(
            {name: nn.Linear(self.num_features, classes) for name, classes in (descriptor_classes or {}).items()}
        )
        self.tirads_head = OrdinalHead(self.num_features, tirads_levels) if tirads_levels else None

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, self.kernel_size)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, groups=self.groups, base_width=self.base_width, kernel_size=self.kernel_size)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The feature maps of the four stages (strides 4, 8, 16, 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            maps.append(x)
        return maps

    def pool_features(self, maps: Sequence[Tensor]) -> Tensor:
        """The classifier's input from the stage maps: the last one pooled, or (dense) all four."""
        chosen = maps if self.dense else maps[-1:]
        return torch.cat([torch.flatten(self.avgpool(m), 1) for m in chosen], 1)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features: the last stage's, or (dense) all four stages' concatenated."""
        return self.pool_features(self.forward_stages(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.forward_features(x)))

    def forward_with_descriptors(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Malignancy logits and one logit vector per auxiliary head (each descriptor's; with a
        TI-RADS head, its cumulative logits under ``"tirads"``), from one forward pass."""
        features = self.dropout(self.forward_features(x))
        outputs = {name: head(features) for name, head in self.descriptor_heads.items()}
        if self.tirads_head is not None:
            outputs["tirads"] = self.tirads_head(features)
        return self.fc(features), outputs


class OrdinalHead(nn.Module):
    """Cumulative logits of an ordered category with ``levels`` values (CORAL, Cao et al. 2020):
    one shared projection of the features and ``levels - 1`` biases, logit k scoring "above level
    k". Sharing the projection makes the levels one severity axis, so that every step of the
    scale (TI-RADS 2 < 3 < 4a < ... < 5) teaches the same direction, not only the benign/malignant cut."""

    def __init__(self, in_features: int, levels: int) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"an ordinal head needs two or more levels, got {levels}")
        self.projection = nn.Linear(in_features, 1, bias=False)
        self.thresholds = nn.Parameter(torch.zeros(levels - 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.projection(features) + self.thresholds


RESNET34_DEPTHS = (3, 4, 6, 3)


def baseline(**kwargs) -> ResNet:
    """ResNet34: the paper's baseline."""
    return ResNet(BasicBlock, RESNET34_DEPTHS, **kwargs)


def baseline_bottleneck(**kwargs) -> ResNet:
    """Baseline + Bottleneck: ResNet34 depths with bottleneck blocks, expansion 1 -> 4 (= ResNet50)."""
    return ResNet(Bottleneck, RESNET34_DEPTHS, **kwargs)


def baseline_block(**kwargs) -> ResNet:
    """Baseline + Block: ResNet34 BasicBlocks whose second convolution is 5x5, grouped 32-way."""
    return ResNet(BasicBlock, RESNET34_DEPTHS, groups=32, kernel_size=5, **kwargs)


def thyronet_x4(**kwargs) -> ResNet:
    """ThyroNet-X4 Genesis: bottleneck (expansion 4), 32x4d grouped 5x5 convolutions, [3, 4, 6, 3]."""
    return ResNet(Bottleneck, RESNET34_DEPTHS, groups=32, width_per_group=4, kernel_size=5, **kwargs)
