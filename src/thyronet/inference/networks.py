"""The networks a run's config names, built from the model registry."""

from __future__ import annotations

import logging
from typing import Any

import torch

from thyronet.data.vocabulary import DESCRIPTOR_CLASSES, DESCRIPTORS, TIRADS_LEVELS
from thyronet.errors import ThyronetError
from thyronet.models import create_model, get_entry
from thyronet.runs.config import RunConfig

log = logging.getLogger(__name__)


def build_classifier(config: RunConfig, weights: str | None = None, pretrained: bool = True) -> torch.nn.Module:
    """The run's classifier, with descriptor heads when the config asks for them; ``pretrained``:
    start from ``model.pretrained``'s packaged weights (False when a checkpoint's weights follow).

    ``model.zero_init_residual`` concerns networks with residual branches (the ResNet family); for
    the other networks it is set aside with a log line, so that one config serves a comparison of
    them all. The auxiliary heads need pooled features: the ResNet family and EfficientNet-Lite."""
    model = config.model
    group = get_entry(model.name).group
    residual, with_heads = group == "thyronet", group in ("thyronet", "efficientnet")
    extra: dict[str, Any] = {}
    asked = {"descriptor_heads": (model.descriptor_heads, with_heads), "tirads_head": (model.tirads_head, with_heads),
             "channels": (model.channels != 64, residual)}
    unsupported = [f"model.{option}" for option, (set_, supported) in asked.items() if set_ and not supported]
    if unsupported:
        raise ThyronetError(f"model {model.name} does not take {', '.join(unsupported)}; use a ResNet-family "
                            "model (thyronet_x4, baseline..., resnet18; efficientnet_lite0/2 take the heads) "
                            "or leave it at its default")
    if model.descriptor_heads:
        extra["descriptor_classes"] = {f: len(DESCRIPTOR_CLASSES[f]) for f in DESCRIPTORS}
    if model.tirads_head:
        extra["tirads_levels"] = len(TIRADS_LEVELS)
    if residual:  # the others refused any other width above
        extra["channels"] = model.channels
    if model.zero_init_residual:
        if residual:
            extra["zero_init_residual"] = True
        else:
            log.info("model.zero_init_residual does not apply to %s (no residual branches)", model.name)
    return create_model(model.name, num_classes=len(config.class_names), in_chans=config.data.in_chans, weights=weights,
                        pretrained=model.pretrained if pretrained else None, drop_rate=model.drop_rate, **extra)
