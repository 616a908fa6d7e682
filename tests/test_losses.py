"""The masked auxiliary losses: a missing descriptor or TI-RADS category contributes nothing."""

import pytest
import torch
import torch.nn.functional as F

from thyronet.data.vocabulary import MISSING, TIRADS_LEVELS, tirads_target
from thyronet.training.losses import descriptor_loss, ordinal_loss


def test_a_missing_descriptor_contributes_nothing():
    torch.manual_seed(0)
    outputs = {"margins": torch.randn(4, 3), "calcifications": torch.randn(4, 2)}
    targets = torch.tensor([[0, 1], [2, MISSING], [MISSING, MISSING], [1, 0]])
    expected = F.cross_entropy(outputs["margins"][[0, 1, 3]], torch.tensor([0, 2, 1])) + F.cross_entropy(
        outputs["calcifications"][[0, 3]], torch.tensor([1, 0]))
    assert float(descriptor_loss(outputs, targets, ["margins", "calcifications"])) == pytest.approx(float(expected))
    # whatever a head answers for an item without that descriptor, the loss does not change
    changed = {"margins": outputs["margins"].clone(), "calcifications": outputs["calcifications"].clone()}
    changed["margins"][2] += 100.0
    changed["calcifications"][1:3] -= 100.0
    assert float(descriptor_loss(changed, targets, ["margins", "calcifications"])) == pytest.approx(float(expected))
    nothing_known = torch.full((4, 2), MISSING)
    assert float(descriptor_loss(outputs, nothing_known, ["margins", "calcifications"])) == 0.0


def test_ordinal_loss_scores_each_step_of_the_scale_and_skips_missing_levels():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    levels = torch.tensor([1, 3, MISSING])  # level 1: above step 0 only; level 3: above every step
    above = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    expected = F.binary_cross_entropy_with_logits(logits[:2], above)
    assert float(ordinal_loss(logits, levels)) == pytest.approx(float(expected))
    assert float(ordinal_loss(logits, torch.full((3,), MISSING))) == 0.0


def test_tirads_targets_follow_the_scale():
    assert TIRADS_LEVELS == ("2", "3", "4a", "4b", "4c", "5")
    assert [tirads_target({"tirads": level}) for level in ("2", "4a", "5")] == [0, 2, 5]
    assert tirads_target({"tirads": None}) == MISSING and tirads_target({}) == MISSING
