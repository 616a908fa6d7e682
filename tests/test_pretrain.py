"""Self-supervised pretraining: the contrastive loss, the two views, and `thyronet pretrain` end to end."""

from __future__ import annotations

import math

import pytest
import torch

from synthetic import make_busi
from thyronet.apps.cli import main
from thyronet.data import open_source
from thyronet.models import create_model
from thyronet.runs.config import load_config
from thyronet.training.losses import contrastive_loss
from thyronet.training.pretrain import TwoViews, view_dataset


def test_contrastive_loss_rewards_matching_views():
    partners = torch.eye(4)  # four images, each far from the others
    aligned = torch.cat([partners, partners])  # both views of an image identical
    loss, accuracy = contrastive_loss(aligned, temperature=0.5)
    assert accuracy == 1.0
    # the partner's similarity is 1 / 0.5, the six other views' 0: a known closed form
    expected = -math.log(math.exp(2) / (math.exp(2) + 6))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    collapsed = torch.ones(8, 3)  # every view the same: nothing to tell apart
    loss, _ = contrastive_loss(collapsed, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(7), rel=1e-5)


def test_contrastive_loss_needs_pairs():
    with pytest.raises(ValueError, match="even number"):
        contrastive_loss(torch.randn(5, 3), temperature=0.2)


def test_two_views_differ_but_come_from_one_image(training_ddti):
    config = load_config("cpu", ["data.preprocess.size=32"])
    records = [r for r in open_source(training_ddti).images if r.outlines][:2]
    pairs = TwoViews(view_dataset(config, records))
    first, second = pairs[(0, 7)]
    assert first.shape == second.shape == (1, 32, 32)
    assert not torch.equal(first, second)
    again = pairs[(0, 7)]
    assert torch.equal(again[0], first) and torch.equal(again[1], second)  # seeded: reproducible


def test_pretrain_writes_an_encoder_the_classifier_loads(training_ddti, tmp_path):
    busi_dir = make_busi(tmp_path / "busi")
    out = tmp_path / "pretrain"
    args = ["pretrain", "--images", str(busi_dir), "--unlabelled", str(training_ddti), "--model", "resnet18",
            "--epochs", "1", "--set", "pretrain.batch_size=4", "--set", "data.preprocess.size=32",
            "--set", "trainer.threads=1", "--out", str(out)]
    assert main(args) == 0
    assert (out / "metrics.csv").read_text().splitlines()[0].count("train/pair_acc") == 1 and (out / "curves.png").is_file()
    encoder = torch.load(out / "encoder.pt", weights_only=True)
    assert "conv1.weight" in encoder and not any(k.startswith(("fc.", "descriptor_heads.")) for k in encoder)
    model = create_model("resnet18", in_chans=1, weights=out / "encoder.pt",
                         descriptor_classes={"composition": 3})
    assert torch.equal(model.state_dict()["conv1.weight"], encoder["conv1.weight"])
    assert main(args) == 0  # the same command again: resumes the finished run, writes the encoder again
    assert main([*args, "--set", "pretrain.temperature=0.5"]) == 2  # another config cannot resume it


def test_pretrain_takes_only_unlabelled_images_from_an_unlabelled_source(training_ddti, tmp_path, capsys):
    out = tmp_path / "pretrain"
    code = main(["pretrain", "--unlabelled", str(training_ddti), "--set", "pretrain.batch_size=4", "--out", str(out)])
    assert code == 2  # the synthetic DDTI has one unlabelled case: too few images, a clear error
    assert "pretraining needs at least 8 images" in capsys.readouterr().err


def test_pretrain_needs_a_source(capsys):
    assert main(["pretrain"]) == 2
    assert "give --images SOURCE" in capsys.readouterr().err
