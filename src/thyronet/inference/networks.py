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


def build_classifier(config: RunConfig, weights: str | None = None) -> torch.nn.Module:
    """The run's classifier, with descriptor heads when the config asks for them.

    ``model.zero_init_residual`` concerns networks with residual branches (the ResNet family); for
    the paper's peers (VGG, AlexNet, GoogLeNet, MobileNet) it is set aside with a log line, so that
    one config serves a comparison of all eight models."""
    model = config.model
    residual = get_entry(model.name).group == "thyronet"
    extra: dict[str, Any] = {}
    asked = {"descriptor_heads": model.descriptor_heads, "tirads_head": model.tirads_head,
             "channels": model.channels != 64}
    unsupported = [f"model.{option}" for option, set_ in asked.items() if set_ and not residual]
    if unsupported:
        raise ThyronetError(f"model {model.name} does not take {', '.join(unsupported)}; use a ResNet-family "
                            "model (thyronet_x4, baseline..., resnet18) or leave it at its default")
    if model.descriptor_heads:
        extra["descriptor_classes"] = {f: len(DESCRIPTOR_CLASSES[f]) for f in DESCRIPTORS}
    if model.tirads_head:
        extra["tirads_levels"] = len(TIRADS_LEVELS)
    if residual:  # the peers refused any other width above
        extra["channels"] = model.channels
    if model.zero_init_residual:
        if residual:
            extra["zero_init_residual"] = True
        else:
            log.info("model.zero_init_residual does not apply to %s (no residual branches)", model.name)
    return create_model(model.name, num_classes=len(config.class_names), in_chans=config.data.in_chans, weights=weights,
                        drop_rate=model.drop_rate, **extra)
