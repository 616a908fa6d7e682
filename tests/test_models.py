"""timm-style tests over every registered model, plus ThyroNet-X4 specifics."""

import numpy as np
import pytest
import torch
from torchvision.models import resnext50_32x4d

from thyronet.errors import DataError, ThyronetError
from thyronet.models import cam_target_layer, create_model, get_entry, list_models
from thyronet.models.profile import count_macs, count_parameters

# Parameters with 2 classes and 3 input channels (ResNet34 = 21,285,698; ResNet50 = 23,512,130).
PINNED_PARAMETERS = {
    "baseline": 21_285_698,
    "baseline_bottleneck": 23_512_130,
    "baseline_block": 10_950_850,
    "thyronet_x4": 25_498_946,
    "thyronet_x4_dense": 25_502_530,
    "resnet18": 11_177_538,
    "vgg16_bn": 134_277_186,
    "alexnet": 57_012_034,
    "googlenet": 5_601_954,
    "mobilenet_v2": 2_226_434,
    "efficientnet_lite0": 3_373_570,
    "efficientnet_lite2": 4_813_634,
}
CLASSIFIERS = list_models(task="classify")
SEGMENTERS = list_models(task="segment")


def test_registry_lists_the_paper_family_and_peers():
    assert list_models("thyronet")[:4] == ["baseline", "baseline_bottleneck", "baseline_block", "thyronet_x4"]
    assert set(list_models("peer")) == {"vgg16_bn", "alexnet", "googlenet", "mobilenet_v2"}
    assert set(PINNED_PARAMETERS) == set(CLASSIFIERS)
    assert SEGMENTERS == list_models("segmentation") == ["unet", "unet_x4", "unet_lite0"]
    assert set(list_models("efficientnet")) == {"efficientnet_lite0", "efficientnet_lite2"}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_parameter_count_is_pinned(name):
    assert count_parameters(create_model(name, num_classes=2, in_chans=3)) == PINNED_PARAMETERS[name]


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_gives_finite_logits(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, in_chans=in_chans).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_chans, 64, 64))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=2 if get_entry(name).task == "classify" else 1, in_chans=1).train()
    model(torch.randn(2, 1, 64, 64)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_cam_target_layer_exists_and_is_spatial(name):
    model = create_model(name, in_chans=1).eval()
    layer = cam_target_layer(model, name)
    captured = {}
    layer.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with torch.no_grad():
        model(torch.randn(1, 1, 96, 96))
    assert captured["out"].ndim == 4 and 2 <= captured["out"].shape[-1] <= 6  # a coarse spatial grid at 96 px


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("size", [64, 96])
def test_segmenters_give_one_logit_per_input_pixel(name, size):
    model = create_model(name, num_classes=1, in_chans=1).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 1, size, size) and torch.isfinite(out).all()
    with pytest.raises(ThyronetError, match="Grad-CAM explains classifiers"):
        cam_target_layer(model, name)


def test_unet_x4_reuses_the_thyronet_x4_encoder():
    encoder = create_model("unet_x4", num_classes=1).encoder
    assert encoder.stages[2][0].conv2.kernel_size == (5, 5) and encoder.stages[2][0].conv2.groups == 32
    assert encoder.widths == [64, 256, 512, 1024, 2048]


def test_descriptor_heads_share_the_features_and_leave_forward_unchanged():
    torch.manual_seed(0)
    plain = create_model("resnet18", in_chans=1).eval()
    torch.manual_seed(0)
    heads = create_model("resnet18", in_chans=1, descriptor_classes={"composition": 6, "margins": 5}).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, outputs = heads.forward_with_descriptors(x)
        assert torch.allclose(logits, heads(x)) and torch.allclose(heads(x), plain(x))
    assert outputs["composition"].shape == (2, 6) and outputs["margins"].shape == (2, 5)


def test_tirads_head_gives_cumulative_logits_on_one_axis():
    torch.manual_seed(0)
    model = create_model("resnet18", in_chans=1, tirads_levels=6).eval()
    with torch.no_grad():
        logits, outputs = model.forward_with_descriptors(torch.randn(3, 1, 64, 64))
        model.tirads_head.thresholds.copy_(torch.tensor([2.0, 1.0, 0.0, -1.0, -2.0]))
        steps = model.forward_with_descriptors(torch.randn(3, 1, 64, 64))[1]["tirads"]
    assert logits.shape == (3, 2) and outputs["tirads"].shape == (3, 5)
    # one projection: a case's cumulative logits differ by the thresholds alone
    assert torch.allclose(steps - steps[:, :1], torch.tensor([0.0, -1.0, -2.0, -3.0, -4.0]).expand(3, 5))
    with pytest.raises(ValueError, match="two or more levels"):
        create_model("resnet18", tirads_levels=1)


def test_channels_scales_every_stage():
    narrow = create_model("resnet18", in_chans=1, channels=16)
    assert [getattr(narrow, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert narrow.fc.in_features == 128 and narrow.num_features == 128
    assert count_parameters(narrow) < count_parameters(create_model("resnet18", in_chans=1)) / 10


def test_thyronet_x4_block_layout():
    model = create_model("thyronet_x4")
    block = model.layer3[0]
    assert block.conv2.kernel_size == (5, 5) and block.conv2.groups == 32
    assert block.conv2.in_channels == 32 * 4 * 4  # 32 groups x 4 wide x (256/64)
    assert block.conv3.out_channels == 256 * 4  # expansion 4
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_thyronet_x4_macs_at_224():
    assert count_macs(create_model("thyronet_x4")) == pytest.approx(4.64e9, rel=0.01)


def test_dense_head_concatenates_all_stages():
    model = create_model("thyronet_x4_dense")
    assert model.fc.in_features == 256 + 512 + 1024 + 2048
    assert create_model("thyronet_x4").fc.in_features == 2048


def test_baseline_block_is_one_change_from_the_baseline():
    baseline, block = create_model("baseline"), create_model("baseline_block")
    assert baseline.layer1[0].conv2.kernel_size == (3, 3) and baseline.layer1[0].conv2.groups == 1
    assert block.layer1[0].conv2.kernel_size == (5, 5) and block.layer1[0].conv2.groups == 32
    assert block.layer1[0].conv1.kernel_size == (3, 3)


def test_unknown_model_and_bad_channels():
    with pytest.raises(ThyronetError, match="unknown model 'resnet999'"):
        create_model("resnet999")
    with pytest.raises(ThyronetError, match="in_chans"):
        create_model("thyronet_x4", in_chans=4)


@pytest.fixture(scope="module")
def resnext_file(tmp_path_factory):
    torch.manual_seed(1)
    reference = resnext50_32x4d(weights=None).eval()
    for module in reference.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "resnext50_32x4d.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    reference.fc = torch.nn.Identity()
    return path, reference


def test_resnext_weights_inflate_to_5x5_and_compute_the_same(resnext_file):
    path, reference = resnext_file
    model = create_model("thyronet_x4", in_chans=3, weights=path).eval()
    kernel = model.layer2[1].conv2.weight
    assert kernel.shape[-1] == 5 and torch.all(kernel[..., 0, :] == 0) and torch.all(kernel[..., :, 4] == 0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), reference(x), atol=1e-5)


def test_rgb_stem_is_summed_for_greyscale_input(resnext_file):
    path, reference = resnext_file
    model = create_model("thyronet_x4", in_chans=1, weights=path).eval()
    grey = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(grey), reference(grey.expand(-1, 3, -1, -1)), atol=1e-4)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    torch.save({"something": torch.zeros(3)}, tmp_path / "odd.pt")
    with pytest.raises(DataError, match="odd.pt: does not fit this model"):
        create_model("thyronet_x4", weights=tmp_path / "odd.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.pt: not a readable PyTorch weights file"):
        create_model("thyronet_x4", weights=tmp_path / "junk.pt")
    with pytest.raises(DataError, match="weights file not found"):
        create_model("thyronet_x4", weights=tmp_path / "absent.pt")


def test_thyronet_x4_onnx_matches_torch(tmp_path):
    from thyronet.inference.onnx import OnnxGraph, export_onnx

    torch.manual_seed(0)
    model = create_model("thyronet_x4", in_chans=1).eval()
    path = export_onnx(model, tmp_path / "x4.onnx", in_chans=1, size=64)
    batch = torch.randn(3, 1, 64, 64)  # another batch size than the export's example
    with torch.no_grad():
        expected = model(batch).numpy()
    assert np.abs(OnnxGraph(path)(batch.numpy()) - expected).max() < 1e-4
