"""Loading weights from a local file the user already has; nothing is ever downloaded.

Accepted: a plain state dict, or a checkpoint holding one under ``state_dict``/``model``/
``state_dict_ema`` (torchvision, timm, Lightning). Adaptations, each one reported:

* prefixes ``module.``/``model.`` (DDP, Lightning) are stripped;
* a 3-channel stem loaded into a 1-channel model is summed over its RGB filters;
* a 3x3 kernel loaded into a 5x5 convolution is zero-padded around the centre, so ThyroNet-X4
  initialised from ResNeXt-50 32x4d weights computes exactly what that network computes;
* a task head (the classifier, a descriptor head) that the file holds in another shape, or does
  not hold at all (a pretrained encoder), is left freshly initialised.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from thyronet.errors import DataError

log = logging.getLogger(__name__)
STATE_KEYS = ("state_dict", "model", "state_dict_ema", "model_state_dict")
PREFIXES = ("module.", "model.")
HEADS = ("fc", "classifier", "head", "descriptor_heads")  # task heads: a weights file may leave them out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "weights file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors of many kinds
        raise DataError(path, f"not a readable PyTorch weights file ({error.__class__.__name__}: {error})") from None
    for key in STATE_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise DataError(path, "holds no state dict of tensors")
    state = {}
    for key, value in checkpoint.items():
        for prefix in PREFIXES:
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def inflate_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a kxk kernel to size x size around its centre (same output for 'same' padding)."""
    pad = (size - weight.shape[-1]) // 2
    return F.pad(weight, (pad, pad, pad, pad))


def adapt_tensor(name: str, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """``source`` reshaped to fit ``target``, or None when the two cannot be reconciled."""
    if source.shape == target.shape:
        return source
    if source.ndim == 4 and target.ndim == 4:
        if source.shape[1] == 3 and target.shape[1] == 1 and source.shape[2:] == target.shape[2:]:
            log.info("weights: %s summed over RGB for a 1-channel input", name)
            return source.sum(dim=1, keepdim=True)
        larger = target.shape[-1] - source.shape[-1]
        if source.shape[:2] == target.shape[:2] and larger > 0 and larger % 2 == 0:
            return inflate_kernel(source, target.shape[-1])
    return None


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a local weights file into ``model``, adapting what can be adapted (see module docs)."""
    source = read_state_dict(path)
    target = model.state_dict()
    merged, skipped = {}, []
    for name, tensor in target.items():
        if name not in source:
            skipped.append(name)
            continue
        adapted = adapt_tensor(name, source[name], tensor)
        if adapted is None:
            skipped.append(name)
        else:
            merged[name] = adapted
    head = {name for name in skipped if name.split(".")[0] in HEADS}
    missing = [name for name in skipped if name not in head and not name.endswith("num_batches_tracked")]
    if missing:
        raise DataError(
            Path(path),
            f"does not fit this model: {len(missing)} tensor(s) missing or of another shape, e.g. {missing[:3]}",
        )
    model.load_state_dict({**target, **merged})
    inflated = sum(1 for n in merged if merged[n].shape != source[n].shape and merged[n].ndim == 4)
    log.info("weights: loaded %d tensors from %s (%d adapted; head left new: %s)", len(merged), path, inflated, sorted(head) or "no")
