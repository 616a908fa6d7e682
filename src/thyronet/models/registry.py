"""A timm-style model registry: ``create_model(name, ...)`` and ``list_models()``.

Each entry knows its task (``classify``: benign/malignant logits; ``segment``: one nodule logit
per pixel), the layer Grad-CAM should look at (classifiers) and its default input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from thyronet.errors import ThyronetError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    cam_layer: str  # dotted submodule path of the Grad-CAM target layer ("" for segmenters)
    input_size: int = 224
    description: str = ""
    # "thyronet" (the paper's model and ablations), "efficientnet" (pretrained encoders), "peer" or "segmentation"
    group: str = "thyronet"
    pretrained: tuple[str, ...] = ()  # the packaged weights ``model.pretrained`` may name ("imagenet")

    @property
    def task(self) -> str:
        return "segment" if self.group == "segmentation" else "classify"


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, cam_layer: str, description: str, group: str = "thyronet", input_size: int = 224,
                   pretrained: tuple[str, ...] = ()):
    """Decorator adding a builder ``fn(num_classes, in_chans, **kwargs) -> nn.Module`` to the registry.

    ``group="segmentation"`` registers a segmenter (``num_classes`` output maps per pixel)."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, cam_layer, input_size, description, group, pretrained)
        return builder

    return decorate


def list_models(group: str | None = None, task: str | None = None) -> list[str]:
    """Registered model names, the paper's family first, then its comparison networks, then the
    segmenters; filtered by ``group`` or by ``task`` ("classify" or "segment") when given."""
    return [
        name for name, entry in _REGISTRY.items()
        if (group is None or entry.group == group) and (task is None or entry.task == task)
    ]


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ThyronetError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None


def create_model(
    name: str, num_classes: int = 2, in_chans: int = 3, weights: str | Path | None = None,
    pretrained: str | None = None, **kwargs
) -> nn.Module:
    """Build a registered model; ``weights`` is a local checkpoint file, ``pretrained`` the name of
    weights an installed package ships ("imagenet", where the entry has them). Nothing is downloaded."""
    if in_chans not in (1, 3):
        raise ThyronetError(f"in_chans must be 1 or 3, got {in_chans}")
    entry = get_entry(name)
    if pretrained is not None:
        if pretrained not in entry.pretrained:
            offered = ", ".join(entry.pretrained) or "none"
            raise ThyronetError(f"model {name} has no packaged {pretrained!r} weights (it has: {offered}); "
                                "see `thyronet models` for those that do")
        kwargs["pretrained"] = pretrained
    model = entry.builder(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if weights is not None:
        from thyronet.models.weights import load_pretrained

        load_pretrained(model, weights)
    return model


def cam_target_layer(model: nn.Module, name: str) -> nn.Module:
    """The module Grad-CAM hooks for a classifier built as ``name``."""
    entry = get_entry(name)
    if entry.task != "classify":
        raise ThyronetError(f"{name} is a {entry.task} model: Grad-CAM explains classifiers")
    return model.get_submodule(entry.cam_layer)
