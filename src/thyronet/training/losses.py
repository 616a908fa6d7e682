"""Loss functions beyond plain cross-entropy: masked multi-task descriptor loss, the masked
ordinal loss of the TI-RADS head, Dice + BCE, the contrastive loss of self-supervised pretraining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from thyronet.data.vocabulary import MISSING


def descriptor_loss(outputs: Mapping[str, Tensor], targets: Tensor, names: Sequence[str]) -> Tensor:
    """Sum over descriptor heads of the cross-entropy over the items whose descriptor is known.

    ``targets`` is (batch, heads) in ``names`` order, MISSING where a descriptor is not given:
    such an item contributes nothing to that head, and a head with no known item contributes 0.
    """
    total = targets.new_zeros((), dtype=torch.float32)
    for column, name in enumerate(names):
        known = targets[:, column] != MISSING
        if known.any():
            total = total + F.cross_entropy(outputs[name][known].float(), targets[known, column])
    return total


def ordinal_loss(logits: Tensor, levels: Tensor) -> Tensor:
    """Binary cross-entropy of cumulative logits (batch, levels - 1) against "level above k", over
    the items whose level is known (``levels`` is MISSING elsewhere); 0 when no level is known."""
    known = levels != MISSING
    if not known.any():
        return logits.new_zeros((), dtype=torch.float32)
    steps = torch.arange(logits.shape[1], device=levels.device)
    above = (levels[known, None] > steps).float()
    return F.binary_cross_entropy_with_logits(logits[known].float(), above)


def dice_bce_loss(logits: Tensor, masks: Tensor, smooth: float = 1.0) -> Tensor:
    """Binary cross-entropy plus soft Dice loss (1 - Dice per image, averaged over the batch).

    Dice keeps the small nodule (a few percent of the frame) from being drowned by background
    pixels; BCE gives well-behaved gradients from the first step.
    """
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    probs = torch.sigmoid(logits).flatten(1)
    flat = masks.flatten(1)
    dice = (2 * (probs * flat).sum(1) + smooth) / (probs.sum(1) + flat.sum(1) + smooth)
    return bce + (1 - dice).mean()


def contrastive_loss(embeddings: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """NT-Xent (SimCLR, Chen et al. 2020) and its pair accuracy.

    ``embeddings`` is (2n, d): rows i and i + n are two views of one image. Each view's partner
    must be picked out among the other 2n - 1 views by cosine similarity; the accuracy is the
    fraction of views whose most similar other view is their partner.
    """
    count = embeddings.shape[0]
    if count % 2 or count < 4:
        raise ValueError(f"contrastive_loss: expected an even number >= 4 of views, got {count}")
    unit = F.normalize(embeddings.float(), dim=1)
    similarity = unit @ unit.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # a view is not its own partner
    partners = torch.arange(count, device=embeddings.device).roll(count // 2)
    loss = F.cross_entropy(similarity, partners)
    accuracy = (similarity.argmax(1) == partners).float().mean()
    return loss, accuracy
