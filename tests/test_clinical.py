"""Calibration, thresholds, Grad-CAM, localisation, prediction, export and reports."""

import json

import numpy as np
import pytest
from PIL import Image

from synthetic import ultrasound_image
from thyronet.apps.cli import main
from thyronet.evaluation.localisation import LocalisationSummary, cam_mass_inside, pointing_hit
from thyronet.inference.calibration import (
    calibrate,
    calibrated_malignant,
    expected_calibration_error,
    fit_platt,
    negative_log_likelihood,
    operating_point,
    threshold_for_sensitivity,
)


def test_temperature_scaling_lowers_nll_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    margin = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 1.5, 500)  # noisy, informative
    logits = np.stack([np.zeros(500), margin * 6.0], 1)  # 6x overconfident
    temperature, bias = fit_platt(logits, labels)
    assert temperature > 2 and bias == 0
    assert negative_log_likelihood(logits, labels, temperature) < negative_log_likelihood(logits, labels) - 0.2
    assert expected_calibration_error(labels, calibrated_malignant(logits, temperature)) < expected_calibration_error(
        labels, calibrated_malignant(logits))


def test_the_bias_undoes_the_prior_shift_of_a_class_weighted_model():
    """Log-odds centred for a balanced population on data that is 80% positive: a temperature
    alone cannot move the mean probability to 0.8, the bias does."""
    rng = np.random.default_rng(1)
    labels = (rng.random(2000) < 0.8).astype(int)
    log_odds = np.where(labels == 1, 0.5, -0.5) + rng.normal(0, 1.0, 2000)  # weakly informative, centred at 0
    logits = np.stack([np.zeros(2000), log_odds], 1)
    temperature_only = calibrated_malignant(logits, fit_platt(logits, labels)[0])
    temperature, bias = fit_platt(logits, labels, bias=True)
    both = calibrated_malignant(logits, temperature, bias)
    assert abs(temperature_only.mean() - 0.8) > 0.15 and both.mean() == pytest.approx(0.8, abs=0.02)
    assert negative_log_likelihood(logits, labels, temperature, bias) < negative_log_likelihood(
        logits, labels, fit_platt(logits, labels)[0]) - 0.05
    assert calibrate(logits, labels).bias == pytest.approx(bias)


@pytest.mark.parametrize("target", [0.8, 0.9, 1.0])
def test_threshold_meets_the_target_sensitivity_on_fixed_vectors(target):
    labels = np.array([1] * 10 + [0] * 10)
    probs = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3] + [0.65, 0.55, 0.35, 0.2, 0.1] * 2)
    threshold = threshold_for_sensitivity(labels, probs, target)
    sensitivity = (probs[labels == 1] >= threshold).mean()
    assert sensitivity >= target
    # the most specific such threshold: one step higher would miss the target
    higher = np.sort(probs[labels == 1])[::-1][int(np.ceil(target * 10)) - 1]
    assert threshold == higher
    assert {0.8: 0.5, 0.9: 0.4, 1.0: 0.3}[target] == pytest.approx(threshold)


def test_calibrate_reports_validation_operating_point():
    labels = np.array([1] * 12 + [0] * 12)
    margin = np.array([3.0, 2.5, 2.0, 1.8, 1.5, 1.2, 1.0, 0.8, 0.5, -1.0, -1.5, -2.0] +
                      [1.6, 0.9, 0.2, -0.1, -0.4, -0.7, -1.1, -1.3, -1.7, -2.2, -2.6, -3.0])
    calibration = calibrate(np.stack([np.zeros(24), margin], 1), labels, 0.75)
    assert calibration.warning is None and (calibration.val_benign, calibration.val_malignant) == (12, 12)
    assert calibration.val_sensitivity == 0.75 and calibration.val_specificity == pytest.approx(10 / 12)


def test_a_threshold_on_too_few_benign_cases_is_refused_and_every_answer_says_so():
    """The fresh-machine case: 48 validation cases of which 8 benign."""
    rng = np.random.default_rng(3)
    labels = np.array([1] * 40 + [0] * 8)
    probs = rng.uniform(0.6, 0.95, 48)
    calibration = operating_point(labels, probs, 0.9)
    assert calibration.threshold == 0.5 and "refused" in calibration.warning and "8 benign" in calibration.warning
    assert calibration.val_specificity == 0.0 and "also calls every validation image one class" in calibration.warning


def test_benign_images_are_counted_by_case_so_that_several_views_of_few_nodules_are_not_enough():
    """The fresh-machine DDTI split: 10 benign validation images, but from 8 cases."""
    labels = np.array([0] * 10 + [1] * 30)
    probs = np.concatenate([np.linspace(0.1, 0.5, 10), np.linspace(0.4, 0.95, 30)])
    cases = [f"b{i % 8}" for i in range(10)] + [f"m{i}" for i in range(30)]
    assert operating_point(labels, probs, 0.9).warning is None  # 10 benign images would be enough
    calibration = operating_point(labels, probs, 0.9, cases=cases)
    assert calibration.threshold == 0.5 and "8 benign and 30 malignant validation cases" in calibration.warning


def test_a_threshold_that_calls_every_case_malignant_is_refused():
    labels = np.array([1] * 20 + [0] * 20)
    probs = np.concatenate([np.linspace(0.7, 0.9, 20), np.linspace(0.8, 0.95, 20)])  # the benign score higher
    calibration = operating_point(labels, probs, 1.0)
    assert threshold_for_sensitivity(labels, probs, 1.0) == pytest.approx(0.7)  # would call all 40 malignant
    assert calibration.threshold == 0.5 and "sensitivity 1.00, specificity 0.00" in calibration.warning


def test_the_run_ends_with_the_test_auroc_its_counts_and_a_warning_when_it_may_be_chance():
    from thyronet.evaluation.tables import headline

    def result(auroc, low, high):
        return {"case": {"n": 60, "n_malignant": 48, "auroc": auroc, "auroc_ci_low": low, "auroc_ci_high": high}}

    good = headline({"val": result(0.8, 0.7, 0.9), "test": result(0.81, 0.70, 0.90), "calibration": {"warning": None}})
    assert good == "test: case AUROC 0.810 [0.700, 0.900] on 60 cases (12 benign, 48 malignant)"
    weak = headline({"test": result(0.6, 0.45, 0.74), "calibration": {"warning": "operating threshold 0.77 refused: x"}})
    assert "warning: the 95% interval includes 0.5" in weak and "warning: operating threshold 0.77 refused" in weak


def test_cam_in_outline_on_a_known_hot_spot():
    heat = np.zeros((50, 50), np.float32)
    heat[10:20, 10:20] = 1.0
    heat[40, 40] = 0.5
    mask = np.zeros((50, 50), np.uint8)
    mask[5:25, 5:25] = 255
    assert cam_mass_inside(heat, mask) == pytest.approx(100 / 100.5)
    assert pointing_hit(heat, mask)
    assert not pointing_hit(heat, 255 - mask)
    summary = LocalisationSummary.from_pairs([(heat, mask), (heat, 255 - mask)])
    assert summary.pointing_hit_rate == 0.5 and summary.outline_area_share == pytest.approx(0.5)


@pytest.fixture(scope="module")
def trained_run(training_ddti, tmp_path_factory):
    """A 1-epoch model per channel count, trained on synthetic data."""
    runs = {}
    for in_chans in (1, 3):
        out = tmp_path_factory.mktemp(f"clinical{in_chans}")
        assert main(["train", "--config", "frame", "--data", str(training_ddti), "--model", "resnet18", "--epochs", "1",
                     "--set", "data.preprocess.size=48", "--set", f"data.in_chans={in_chans}",
                     "--set", "train.batch_size=8", "--set", "trainer.threads=1", "--output-dir", str(out)]) == 0
        runs[in_chans] = next(out.iterdir())
    return runs


@pytest.mark.parametrize("in_chans", [1, 3])
def test_grad_cam_shape_and_range(trained_run, in_chans):
    from thyronet.errors import ThyronetError
    from thyronet.inference.backends import load_backend
    from thyronet.inference.cam import CamExplainer

    backend = load_backend(trained_run[in_chans])
    prepared = backend.prepare(ultrasound_image(0, True))
    tensor = backend.to_tensor(prepared.image)
    assert tensor.shape == (1, in_chans, 48, 48) and prepared.region == "scan area"
    maps = {}
    for method in ("gradcam", "gradcam++", "hirescam"):
        maps[method] = heat = CamExplainer(backend, method)(tensor)
        assert heat.shape == prepared.image.shape and heat.min() >= 0 and heat.max() <= 1
    assert not np.allclose(maps["gradcam"], maps["gradcam++"])  # each name runs its own method (HiResCAM equals
    # Grad-CAM exactly behind global average pooling, so it is not the one to compare)
    with pytest.raises(ThyronetError, match="unknown CAM method"):
        CamExplainer(backend, "gradcam2")


def test_predict_on_a_mixed_folder_with_one_corrupt_file(trained_run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(ultrasound_image(1, True)).save(folder / "a.png")
    Image.fromarray(ultrasound_image(2, False)).convert("RGBA").save(folder / "b_alpha.png")
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "p.json"
    code = main(["predict", str(trained_run[1]), str(folder), "--out", str(out), "--report", str(tmp_path / "r.html")])
    assert code == 1  # one input failed, the others were predicted
    rows = {r["input"].split("/")[-1]: r for r in json.loads(out.read_text())}
    assert rows["c.jpg"]["error"].startswith("corrupt or truncated")
    for name in ("a.png", "b_alpha.png"):
        assert 0 <= rows[name]["probability"] <= 1 and rows[name]["decision"] in ("benign", "malignant")
    html = (tmp_path / "r.html").read_text()
    assert "not a diagnosis" in html and html.count("data:image/png;base64") == 4 and "c.jpg" in html


def test_onnx_export_predicts_like_the_checkpoint(trained_run, training_ddti, tmp_path):
    from thyronet.inference.answers import predict_image
    from thyronet.inference.backends import load_backend

    onnx_file = tmp_path / "m.onnx"
    assert main(["export", str(trained_run[1]), "--onnx", str(onnx_file)]) == 0
    torch_backend, onnx_backend = load_backend(trained_run[1]), load_backend(onnx_file)
    assert onnx_backend.calibration == torch_backend.calibration
    image = ultrasound_image(5, True)
    frames = [image, ultrasound_image(6, False)]
    logits = [np.stack([r.logits for r in backend.predictor.predict_batch(frames)]) for backend in (torch_backend, onnx_backend)]
    assert logits[0].shape == (2, 2) and np.abs(logits[0] - logits[1]).max() < 1e-4
    assert predict_image(onnx_backend, image, "x").prediction.probability == pytest.approx(
        predict_image(torch_backend, image, "x").prediction.probability, abs=1e-5)
    # evaluation scores through the same predictor: the export's figures are the checkpoint's
    for name, model in (("onnx", onnx_file), ("torch", trained_run[1])):
        assert main(["evaluate", str(model), str(training_ddti), "--out", str(tmp_path / name)]) == 0
    onnx_metrics, torch_metrics = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("onnx", "torch"))
    assert onnx_metrics["case"]["auroc"] == pytest.approx(torch_metrics["case"]["auroc"], abs=1e-6)


def test_explain_writes_side_by_side_pngs(trained_run, tmp_path):
    image = tmp_path / "n.png"
    Image.fromarray(ultrasound_image(3, True)).save(image)
    assert main(["explain", str(trained_run[1]), str(image), "--out", str(tmp_path / "x"), "--method", "gradcam++"]) == 0
    with Image.open(tmp_path / "x" / "n_gradcam++.png") as png:
        assert png.size[0] >= 2 * 560  # the frame at its own resolution, twice


def test_localise_and_analyse_commands(trained_run, training_ddti, capsys):
    assert main(["localise", str(trained_run[1]), "--data", str(training_ddti), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["images"] > 0 and 0 <= row["mass_inside_mean"] <= 1 and row["layer"] == "registry"
    # a finer layer by its name; a layer the network lacks is named in the error with the ones it has
    assert main(["localise", str(trained_run[1]), "--data", str(training_ddti), "--layer", "layer3", "--json"]) == 0
    finer = json.loads(capsys.readouterr().out)[0]
    assert finer["layer"] == "layer3" and finer["images"] == row["images"]
    assert main(["localise", str(trained_run[1]), "--data", str(training_ddti), "--layer", "layer9"]) == 2
    error = capsys.readouterr().err
    assert "no layer 'layer9'" in error and "layer4" in error
    assert main(["analyse", str(trained_run[1])]) == 0
    assert (trained_run[1] / "errors_by_category.png").is_file()
    assert "| composition | solid |" in capsys.readouterr().out


def test_bad_model_files_are_clear_errors(tmp_path, capsys):
    (tmp_path / "x.onnx").write_bytes(b"nope")
    (tmp_path / "x.ckpt").write_bytes(b"nope")
    assert main(["predict", "--onnx", str(tmp_path / "x.onnx"), "a.png"]) == 2
    assert main(["predict", str(tmp_path / "x.ckpt"), "a.png"]) == 2
    err = capsys.readouterr().err
    assert "x.onnx: not a loadable ONNX model" in err and "x.ckpt: not a thyronet checkpoint" in err


def test_feature_gate_passes_its_own_distribution_and_flags_a_shifted_one():
    from thyronet.inference.ood import FeatureGate

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 64))
    def sample(n, shift=0.0):
        return rng.normal(size=(n, 8)) @ basis + 0.1 * rng.normal(size=(n, 64)) + shift
    gate = FeatureGate.fit(sample(400), sample(200), components=8)
    assert 0.9 <= (gate.score(sample(1000)) <= 1).mean() <= 0.99  # about the 95% it was set for
    assert (gate.score(sample(200, shift=3.0)) > 1).mean() > 0.99
    off_subspace = sample(200) + 2.0 * rng.normal(size=(200, 64))  # unlike anything along the training directions
    assert (gate.score(off_subspace) > 1).mean() > 0.99
    assert FeatureGate(**gate.to_dict()).score(sample(3)).shape == (3,)


def test_noise_is_flagged_and_refused_on_request(trained_run, tmp_path, capsys):
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (360, 560), dtype=np.uint8)).save(noise)
    out = tmp_path / "p.json"
    assert main(["predict", str(trained_run[1]), str(noise), "--out", str(out)]) == 0
    row = json.loads(out.read_text())[0]
    assert row["ood_score"] > 1 and "does not look like the thyroid ultrasound" in row["warning"]
    assert row["probability"] is not None  # a warning, not a refusal
    assert main(["predict", str(trained_run[1]), str(noise), "--refuse-ood", "--out", str(out)]) == 1
    row = json.loads(out.read_text())[0]
    assert row["error"].startswith("refused:") and row["probability"] is None


def test_export_refuses_pooling_onnx_cannot_express(tmp_path):
    import torch

    from thyronet.errors import ThyronetError
    from thyronet.inference.onnx import export_onnx, uneven_adaptive_pooling
    from thyronet.models import create_model

    alexnet = create_model("alexnet", in_chans=1).eval()
    assert uneven_adaptive_pooling(alexnet, torch.randn(1, 1, 96, 96)) == "2x2 -> 6x6"
    assert uneven_adaptive_pooling(alexnet, torch.randn(1, 1, 224, 224)) is None
    with pytest.raises(ThyronetError, match="96-px model cannot be exported to ONNX: its adaptive pooling maps 2x2 -> 6x6"):
        export_onnx(alexnet, tmp_path / "a.onnx", 1, 96)
    assert not (tmp_path / "a.onnx").exists()


def test_a_head_is_assessed_only_when_it_beats_the_commonest_value_beyond_chance():
    from thyronet.evaluation.tables import descriptor_reliability

    def head(balanced, kappa_low):
        return {"n": 80, "acc": 0.6, "majority_acc": 0.5, "balanced_acc": balanced, "majority_balanced_acc": 1 / 3,
                "kappa": kappa_low + 0.1, "kappa_ci_low": kappa_low, "kappa_ci_high": kappa_low + 0.2}

    verdict = descriptor_reliability({"composition": head(0.6, 0.05), "echogenicity": head(0.6, -0.02),
                                      "margins": head(0.3, 0.01), "calcifications": {"n": 0}})
    assert [verdict[name]["assessed"] for name in ("composition", "echogenicity", "margins", "calcifications")] == [
        True, False, False, False]
