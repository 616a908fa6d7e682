"""Registry entries: ThyroNet-X4 Genesis, its ablations (Tables 1-2) and the comparison networks.

Every builder takes ``num_classes``, ``in_chans`` and ``drop_rate`` (ignored by segmenters).

The comparison networks are torchvision's constructors, never with downloaded weights, given a
2-class head and a 1- or 3-channel stem.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from thyronet.models import efficientnet, resnet, unet
from thyronet.models.registry import register_model


@register_model("baseline", "layer4.2", "ResNet34, the paper's baseline")
def _baseline(**kwargs) -> nn.Module:
    return resnet.baseline(**kwargs)


@register_model("baseline_bottleneck", "layer4.2", "Baseline + Bottleneck: expansion 1 -> 4 (ResNet50 layout)")
def _baseline_bottleneck(**kwargs) -> nn.Module:
    return resnet.baseline_bottleneck(**kwargs)


@register_model("baseline_block", "layer4.2", "Baseline + Block: BasicBlock with grouped (32) 5x5 second conv")
def _baseline_block(**kwargs) -> nn.Module:
    return resnet.baseline_block(**kwargs)


@register_model("thyronet_x4", "layer4.2", "ThyroNet-X4 Genesis: bottleneck x4, 32x4d grouped 5x5 convs")
def _thyronet_x4(**kwargs) -> nn.Module:
    return resnet.thyronet_x4(**kwargs)


@register_model("thyronet_x4_dense", "layer4.2", "ThyroNet-X4 with dense aggregation of all four stages")
def _thyronet_x4_dense(**kwargs) -> nn.Module:
    return resnet.thyronet_x4(dense=True, **kwargs)


@register_model("resnet18", "layer4.1", "ResNet18, the from-scratch reference of our benchmarks")
def _resnet18(**kwargs) -> nn.Module:
    return resnet.ResNet(resnet.BasicBlock, (2, 2, 2, 2), **kwargs)


def _replace_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of a stem convolution taking ``in_chans`` channels (freshly initialised)."""
    if in_chans == conv.in_channels:
        return conv
    return nn.Conv2d(
        in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )


@register_model("vgg16_bn", "features.42", "VGG16 with batch norm (VGGNet peer)", group="peer")
def _vgg16_bn(num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.5, **kwargs) -> nn.Module:
    model = tvm.vgg16_bn(weights=None, num_classes=num_classes, dropout=drop_rate, **kwargs)
    model.features[0] = _replace_conv(model.features[0], in_chans)
    return model


@register_model("alexnet", "features.11", "AlexNet peer", group="peer")
def _alexnet(num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.5, **kwargs) -> nn.Module:
    model = tvm.alexnet(weights=None, num_classes=num_classes, dropout=drop_rate, **kwargs)
    model.features[0] = _replace_conv(model.features[0], in_chans)
    return model


@register_model("googlenet", "inception5b", "GoogLeNet (Inception v1) peer, no auxiliary heads", group="peer")
def _googlenet(num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.2, **kwargs) -> nn.Module:
    # transform_input rescales ImageNet RGB statistics; our inputs are already normalised.
    model = tvm.googlenet(weights=None, num_classes=num_classes, aux_logits=False, init_weights=True,
                          transform_input=False, dropout=drop_rate, **kwargs)
    model.conv1.conv = _replace_conv(model.conv1.conv, in_chans)
    return model


@register_model("mobilenet_v2", "features.18", "MobileNetV2 peer", group="peer")
def _mobilenet_v2(num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.2, **kwargs) -> nn.Module:
    model = tvm.mobilenet_v2(weights=None, num_classes=num_classes, dropout=drop_rate, **kwargs)
    model.features[0][0] = _replace_conv(model.features[0][0], in_chans)
    return model


@register_model("unet", "", "U-Net, 5 scales of 16-256 channels: nodule segmentation", group="segmentation")
def _unet(num_classes: int = 1, in_chans: int = 1, **kwargs) -> nn.Module:
    return unet.unet(in_chans=in_chans, num_classes=num_classes)


@register_model("unet_x4", "", "U-Net decoder over the ThyroNet-X4 encoder: nodule segmentation", group="segmentation")
def _unet_x4(num_classes: int = 1, in_chans: int = 1, **kwargs) -> nn.Module:
    return unet.unet_x4(in_chans=in_chans, num_classes=num_classes)


@register_model("efficientnet_lite0", "body.bn2", "EfficientNet-Lite0 (timm), ImageNet weights packaged: model.pretrained=imagenet",
                group="efficientnet", pretrained=("imagenet",))
def _efficientnet_lite0(**kwargs) -> nn.Module:
    return efficientnet.EfficientNetLite("efficientnet_lite0", **kwargs)


@register_model("efficientnet_lite2", "body.bn2", "EfficientNet-Lite2 (timm, native 260 px), ImageNet weights packaged",
                group="efficientnet", input_size=260, pretrained=("imagenet",))
def _efficientnet_lite2(**kwargs) -> nn.Module:
    return efficientnet.EfficientNetLite("efficientnet_lite2", **kwargs)


@register_model("unet_lite0", "", "U-Net (segmentation-models-pytorch) over the EfficientNet-Lite0 encoder, ImageNet weights packaged",
                group="segmentation", pretrained=("imagenet",))
def _unet_lite0(num_classes: int = 1, in_chans: int = 1, pretrained: str | None = None, **kwargs) -> nn.Module:
    return efficientnet.lite_unet("efficientnet_lite0", num_classes=num_classes, in_chans=in_chans, pretrained=pretrained)
