"""The training engine end to end on tiny synthetic data, and its metric functions."""

import json
import logging

import lightning as L
import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from thyronet.data import holdout_plan, open_source
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, bootstrap_ci, case_level, paired_bootstrap_auroc
from thyronet.inference.predictor import load_checkpoint
from thyronet.runs.config import load_config, parse_override
from thyronet.runs.shipped import shipped_configs
from thyronet.training.train import fit


def tiny_config(tmp_path, *extra):
    return load_config("frame", [
        "model.name=resnet18", "data.preprocess.size=32", "train.epochs=2", "train.batch_size=8",
        f"output_dir={tmp_path}", "trainer.threads=1", *extra,
    ])


class InterruptAt(L.Callback):
    """Simulates Ctrl-C at the start of the given epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def collection(training_ddti):
    return open_source(training_ddti)


@pytest.fixture(scope="module")
def uninterrupted(collection, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    split = holdout_plan(collection, 0.25, 0.25, seed=0).splits[0]
    return fit(tiny_config(tmp), collection, split, tmp / "a"), split


def test_run_folder_holds_everything_a_reader_needs(uninterrupted):
    result, _ = uninterrupted
    run = result.run_dir
    for name in ("config.yaml", "provenance.json", "split.json", "metrics.csv", "curves.png", "results.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "predictions_val.csv", "predictions_test.csv",
                 "confusion_val.png", "roc_test.png", "reliability_val.png"):
        assert (run / name).is_file(), name
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["seed"] == 42 and len(provenance["data_fingerprint"]) == 64
    assert provenance["versions"]["torch"].startswith("2.")
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    results = json.loads((run / "results.json").read_text())
    assert results["val"]["case"]["majority_acc"] > 0 and "auroc_ci_low" in results["test"]["case"]
    assert any((run / "tensorboard").iterdir())


def test_checkpoint_carries_calibration_and_evaluates_the_same(uninterrupted, collection):
    from thyronet.evaluation.tables import score
    from thyronet.inference.predictor import predict_records

    result, split = uninterrupted
    loaded = load_checkpoint(result.run_dir / "checkpoints" / "best.ckpt")
    assert loaded.calibration.temperature > 0 and 0 <= loaded.calibration.threshold <= 1
    assert loaded.info["data_fingerprint"]
    test_records = [r for r in collection.subset(split.test) if r.label is not None]
    predictions = predict_records(loaded, test_records)
    again = score(predictions)
    assert again["case"]["auroc"] == pytest.approx(result.results["test"]["case"]["auroc"])
    # a simulated change of scanner: every frame passes through `alter`, with its position
    positions = []

    def unchanged(frame, position):
        positions.append(position)
        return frame

    assert np.allclose(predict_records(loaded, test_records, batch_size=2, alter=unchanged).logits, predictions.logits, atol=1e-5)
    assert positions == list(range(len(test_records)))
    inverted = predict_records(loaded, test_records, alter=lambda frame, _: 255 - frame)
    assert not np.allclose(inverted.logits, predictions.logits, atol=1e-3)


def test_interrupted_run_resumes_to_the_same_result(uninterrupted, collection, tmp_path):
    reference, split = uninterrupted
    config = tiny_config(tmp_path)
    stopped = fit(config, collection, split, tmp_path / "b", callbacks=[InterruptAt(1)])
    assert not stopped.completed and (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    resumed = fit(config, collection, split, tmp_path / "b", resume=True)
    assert resumed.completed
    final = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    expected = torch.load(reference.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["epoch"] == expected["epoch"] == 1
    final, expected = final["state_dict"], expected["state_dict"]
    # Weights and BatchNorm running statistics: everything the network computes with. (BatchNorm's
    # integer num_batches_tracked counter is only used when momentum is None, as it is not here.)
    compared = [k for k in expected if not k.endswith("num_batches_tracked")]
    differing = [k for k in compared if not torch.allclose(final[k].float(), expected[k].float(), atol=1e-6)]
    assert not differing
    assert resumed.results["val"]["case"]["auroc"] == pytest.approx(reference.results["val"]["case"]["auroc"])
    rows = (tmp_path / "b" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3


def test_resume_refuses_config_changes(tmp_path, capsys):
    from thyronet.apps.cli import main

    assert main(["train", "--resume", str(tmp_path), "--set", "train.lr=0.1", "--epochs", "3"]) == 2
    assert "--set, --epochs would be ignored" in capsys.readouterr().err


def test_resume_without_checkpoint_is_a_clear_error(collection, tmp_path):
    split = holdout_plan(collection, 0.25, 0.25).splits[0]
    with pytest.raises(ThyronetError, match="no checkpoints/last.ckpt"):
        fit(tiny_config(tmp_path), collection, split, tmp_path / "none", resume=True)


def test_config_overrides_and_errors():
    assert parse_override("train.lr=3e-4") == {"train": {"lr": 3e-4}}
    config = load_config("paper", ["train.epochs=5", "trainer.devices=4", "trainer.strategy=ddp"])
    assert (config.train.epochs, config.data.preprocess.size, config.trainer.devices) == (5, 224, 4)
    with pytest.raises(ThyronetError, match="train.epoch: unknown key"):
        load_config("cpu", ["train.epoch=5"])
    with pytest.raises(ThyronetError, match="train.epochs: expected int"):
        load_config("cpu", ["train.epochs=many"])
    with pytest.raises(ThyronetError, match="train.scheduler"):
        load_config("cpu", ["train.scheduler=warp"])
    with pytest.raises(ThyronetError, match="no shipped config"):
        load_config("nonexistent")
    with pytest.raises(ThyronetError, match="checkpoint_every: expected a whole number of epochs >= 1"):
        load_config("cpu", ["trainer.checkpoint_every=0"])
    assert load_config("cpu", ["train.precision=32"]).train.precision == "32"  # a number in YAML, text to Lightning
    with pytest.raises(ThyronetError, match="preprocess.fit"):
        load_config("cpu", ["data.preprocess.fit=crop"])
    assert load_config("frame", ["data.mean=null", "data.std=null"]).data.mean is None  # each input's own
    with pytest.raises(ThyronetError, match="data.mean, data.std: expected both numbers"):
        load_config("frame", ["data.mean=null"])
    with pytest.raises(ThyronetError, match="data.mean, data.std: expected both numbers"):
        load_config("cpu", ["data.mean=0.3"])  # the default standardises each input: both null


def test_every_shipped_config_loads():
    for name in shipped_configs():
        assert load_config(name).task in ("classify", "segment")
    assert {"cpu", "paper", "roi-gpu"} <= set(shipped_configs())


LABELS = np.array([0, 0, 1, 1, 1, 0, 1, 1, 0, 1])
PROBS = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.3, 0.7, 0.55, 0.2, 0.95])


def test_metrics_agree_with_scikit_learn():
    m = binary_metrics(LABELS, PROBS, 0.5)
    predicted = PROBS >= 0.5
    assert m["acc"] == pytest.approx(skm.accuracy_score(LABELS, predicted))
    assert m["balanced_acc"] == pytest.approx(skm.balanced_accuracy_score(LABELS, predicted))
    assert m["precision"] == pytest.approx(skm.precision_score(LABELS, predicted))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(LABELS, predicted))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - LABELS, ~predicted))
    assert m["f1"] == pytest.approx(skm.f1_score(LABELS, predicted))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(LABELS, PROBS))
    assert m["majority_acc"] == pytest.approx(0.6)


def test_bootstrap_ci_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    low, high = bootstrap_ci(labels, probs)
    auroc = skm.roc_auc_score(labels, probs)
    assert low < auroc < high and high - low < 0.2


def test_case_level_averages_images_of_a_case():
    cases, labels, probs = case_level(["a", "b", "a"], np.array([1, 0, 1]), np.array([0.2, 0.3, 0.6]))
    assert cases == ["a", "b"] and labels.tolist() == [1, 0] and probs.tolist() == pytest.approx([0.4, 0.3])


def test_paired_bootstrap_detects_a_better_model():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    good = labels * 0.5 + rng.random(300) * 0.5
    noise = rng.random(300)
    comparison = paired_bootstrap_auroc(labels, good, noise)
    assert comparison["auroc_diff"] > 0.2 and comparison["ci_low"] > 0 and comparison["p_value"] < 0.01


@pytest.mark.slow
def test_cv_and_compare_and_evaluate_commands(training_ddti, tmp_path, capsys):
    from thyronet.apps.cli import main

    common = ["--config", "frame", "--data", str(training_ddti), "--set", "data.preprocess.size=32", "--set", "train.batch_size=8",
              "--set", "trainer.threads=1", "--epochs", "1", "--folds", "3"]
    cv_dir = tmp_path / "cv"
    assert main(["cv", *common, "--model", "resnet18", "--out", str(cv_dir)]) == 0
    summary = json.loads((cv_dir / "cv_results.json").read_text())
    assert summary["folds"] == 3 and len(summary["case_auroc"]["folds"]) == 3
    assert summary["pooled_cases"] == 18  # every labelled case scored once, out of fold
    assert (cv_dir / "roc_pooled.png").is_file() and "mean ± std" in (cv_dir / "cv_summary.md").read_text()
    assert not list(cv_dir.glob("fold-*/checkpoints/last.ckpt"))  # finished folds keep no resume checkpoint
    # running it again resumes: every fold is already done
    assert main(["cv", *common, "--model", "resnet18", "--out", str(cv_dir)]) == 0
    assert "done earlier" in capsys.readouterr().err

    # the fold ensemble: the members' mean calibrated probability, with its own threshold
    from synthetic import ultrasound_image
    from thyronet.inference.answers import predict_image
    from thyronet.inference.backends import load_backend

    ensemble = json.loads((cv_dir / "ensemble.json").read_text())
    assert len(ensemble["members"]) == 3 and 0 <= ensemble["calibration"]["threshold"] <= 1
    backend = load_backend(cv_dir)
    frame = ultrasound_image(4, True)
    members = [predict_image(load_backend(cv_dir / m), frame, "x").prediction.probability for m in ensemble["members"]]
    answer = predict_image(backend, frame, "x").prediction
    assert answer.probability == pytest.approx(np.mean(members), abs=1e-6)
    assert answer.threshold == ensemble["calibration"]["threshold"] and "ensemble of 3" in backend.runtime
    assert main(["export", str(cv_dir), "--onnx", str(tmp_path / "e.onnx")]) == 2
    assert "ensemble is not supported" in capsys.readouterr().err

    cmp_dir = tmp_path / "cmp"
    fast = [a if a != "3" else "2" for a in common]  # compare on 2 folds: the table, not the figures, is tested
    assert main(["compare", *fast, "--models", "baseline_block", "resnet18", "--out", str(cmp_dir),
                 "--reference", "resnet18", "--challenger", "baseline_block"]) == 0
    table = (cmp_dir / "comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    body = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in rows[2:])}
    assert set(body) == {"baseline_block", "resnet18"}
    assert all(len(cells) == len(header) for cells in body.values())  # every row has every column
    assert body["resnet18"][header.index("pooled AUROC [95% CI]")].count("[") == 1
    assert body["baseline_block"][header.index("paper val ACC")] == "0.7061" and body["resnet18"][header.index("paper val ACC")] == ""
    assert "AUROC(baseline_block) - AUROC(resnet18) = " in table  # the paired test on the same out-of-fold cases

    eval_dir = tmp_path / "eval"
    ckpt = cv_dir / "fold-0" / "checkpoints" / "best.ckpt"
    assert main(["evaluate", str(ckpt), str(training_ddti), "--out", str(eval_dir)]) == 0
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["case"]["n"] == 18 and (eval_dir / "predictions_eval.csv").is_file()
    assert main(["evaluate", str(cv_dir), str(training_ddti), "--out", str(tmp_path / "eval-ensemble")]) == 0  # the fold ensemble
    ensemble_rows = (tmp_path / "eval-ensemble" / "predictions_eval.csv").read_text().splitlines()
    assert len(ensemble_rows) == len((eval_dir / "predictions_eval.csv").read_text().splitlines())


def test_batches_carry_the_case_of_every_image(collection, tmp_path):
    from thyronet.training.datamodule import UltrasoundDataModule

    split = holdout_plan(collection, 0.25, 0.25, seed=0).splits[0]
    datamodule = UltrasoundDataModule(tiny_config(tmp_path), collection, split)
    records = datamodule.records("val")
    batch = next(iter(datamodule.val_dataloader()))
    assert batch.image.shape[0] == len(batch.case_id) == len(batch.label)
    assert list(batch.case_id) == [records[i].case_id for i in batch.index.tolist()]


def test_warm_up_then_cosine_per_step():
    from thyronet.runs.config import TrainConfig
    from thyronet.training.optim import configure_optimizers

    parameter = torch.nn.Parameter(torch.zeros(1))
    train = TrainConfig(epochs=5, lr=1e-3, warmup_epochs=1, optimizer="adamw")
    setup = configure_optimizers([parameter], train, epoch_steps=10)
    optimiser, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert isinstance(optimiser, torch.optim.AdamW) and setup["lr_scheduler"]["interval"] == "step"
    rates = []
    for _ in range(50):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-5) and rates[10] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:10], rates[1:11], strict=True))  # rising during the warm-up
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False)) and rates[-1] < 1e-5


def test_mirror_tta_averages_an_image_and_its_mirror():
    from thyronet.inference.calibration import Calibration
    from thyronet.inference.predictor import LoadedModel
    from thyronet.models import create_model
    from thyronet.runs.config import RunConfig

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=2, in_chans=1, descriptor_classes={"margins": 3}).eval()
    loaded = LoadedModel(model, RunConfig(), Calibration())
    batch = torch.randn(2, 1, 32, 32)
    plain, mirrored = loaded.outputs(batch), loaded.outputs(torch.flip(batch, dims=[-1]))
    loaded.config.inference.tta = "hflip"
    both = loaded.outputs(batch)
    assert np.allclose(both.logits, (plain.logits + mirrored.logits) / 2, atol=1e-5)
    assert np.allclose(both.descriptors["margins"], (plain.descriptors["margins"] + mirrored.descriptors["margins"]) / 2, atol=1e-6)
    assert np.array_equal(both.features, plain.features)  # the gate sees what it was fitted on
    assert not np.allclose(plain.logits, mirrored.logits)


def test_cv_folder_lists_folds_in_numeric_order(tmp_path):
    from thyronet.runs.layout import CVFolder, RunFolder

    for name in ("fold-10", "fold-2", "fold-0", "fold-x", "notes"):
        (tmp_path / name).mkdir()
    folder = CVFolder(tmp_path)
    assert [f.root.name for f in folder.folds()] == ["fold-0", "fold-2", "fold-10"]
    assert folder.fold(2).best == tmp_path / "fold-2" / "checkpoints" / "best.ckpt"
    assert RunFolder.of_checkpoint(folder.fold(2).best) == folder.fold(2) and not folder.is_cv()


def test_split_seed_keeps_the_folds_while_the_training_seed_changes(training_ddti, tmp_path):
    from thyronet.data import open_source
    from thyronet.data.splits import kfold_plan
    from thyronet.runs.config import load_config
    from thyronet.training.cv import fold_plan

    collection = open_source(training_ddti)
    repeat = load_config("cpu", ["seed=7", "split.seed=42", "split.folds=3"])
    assert repeat.split_seed == 42 and load_config("cpu", ["seed=7"]).split_seed == 7
    plan = fold_plan(collection, repeat, tmp_path / "cv")
    assert plan.splits == kfold_plan(collection, 3, 42).splits != kfold_plan(collection, 3, 7).splits


def test_a_segmenter_cv_must_not_have_trained_on_held_out_cases(training_ddti, tmp_path):
    from thyronet.data import open_source
    from thyronet.data.splits import kfold_plan
    from thyronet.errors import ThyronetError
    from thyronet.training.cv import check_segmenter_folds

    collection = open_source(training_ddti)
    plan = kfold_plan(collection, 3, 42)
    for seed, folds in ((42, 3), (7, 3), (42, 2)):
        kfold_plan(collection, folds, seed).save(tmp_path / f"seg-{seed}-{folds}" / "folds.json")
    check_segmenter_folds(tmp_path / "seg-42-3", plan)  # the same folds: each fold's segmenter never saw its held-out cases
    check_segmenter_folds(tmp_path / "one.ckpt", plan)  # one file: the user's call
    check_segmenter_folds(None, plan)
    with pytest.raises(ThyronetError, match="trained on .* of this fold's held-out cases"):
        check_segmenter_folds(tmp_path / "seg-7-3", plan)
    with pytest.raises(ThyronetError, match="2 segmenter folds for a 3-fold"):
        check_segmenter_folds(tmp_path / "seg-42-2", plan)


def test_residual_only_options_and_the_peers(caplog):
    from thyronet.inference.networks import build_classifier

    config = load_config("frame", ["model.name=mobilenet_v2", "model.zero_init_residual=true"])
    logger = logging.getLogger("thyronet")  # the CLI stops it propagating to the root (caplog's)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="thyronet"):
            assert build_classifier(config) is not None  # the CPU config's switch does not block the peers
    finally:
        logger.removeHandler(caplog.handler)
    assert "does not apply to mobilenet_v2" in caplog.text
    config.model.descriptor_heads = True
    with pytest.raises(ThyronetError, match="mobilenet_v2 does not take model.descriptor_heads"):
        build_classifier(config)
    config.model.tirads_head, config.model.channels = True, 32
    with pytest.raises(ThyronetError, match="model.descriptor_heads, model.tirads_head, model.channels"):
        build_classifier(config)
    x4 = build_classifier(load_config("frame", ["model.zero_init_residual=true"]))
    assert all(float(block.bn3.weight.abs().sum()) == 0 for block in x4.layer1)


TIRADS_OF_BATCH = torch.tensor([0, 2, 5, -1, 3, 4])  # one case without a TI-RADS category


def _training_loss(tmp_path, *settings, seed=0):
    from thyronet.data.dataset import Sample
    from thyronet.training.module import ThyroNetModule

    torch.manual_seed(0)
    module = ThyroNetModule(tiny_config(tmp_path, "model.drop_rate=0.0", *settings).to_dict()).eval()
    images = torch.randn(6, 1, 32, 32)
    labels = torch.tensor([0, 1, 1, 0, 1, 1])
    batch = Sample(images, labels, torch.arange(6), torch.full((6, 4), -1), [str(i) for i in range(6)], TIRADS_OF_BATCH)
    torch.manual_seed(seed)
    loss, logits, _ = module.training_loss(batch)
    return float(loss.detach()), module, images, labels


def test_the_tirads_head_adds_its_weighted_ordinal_loss(tmp_path):
    import torch.nn.functional as F

    from thyronet.training.losses import ordinal_loss

    with_head, module, images, labels = _training_loss(tmp_path, "model.tirads_head=true", "train.tirads_loss_weight=0.3")
    with torch.no_grad():
        logits, outputs = module.model.forward_with_descriptors(images)
    plain = float(F.cross_entropy(logits.float(), labels, weight=module.class_weights))
    assert with_head == pytest.approx(plain + 0.3 * float(ordinal_loss(outputs["tirads"], TIRADS_OF_BATCH)), rel=1e-5)
    assert with_head > plain


def test_label_smoothing_and_mixup_change_the_training_loss_as_defined(tmp_path):
    import torch.nn.functional as F

    plain, module, images, labels = _training_loss(tmp_path)
    with torch.no_grad():
        logits = module.model(images).float()
    assert plain == pytest.approx(float(F.cross_entropy(logits, labels, weight=module.class_weights)), rel=1e-5)
    smoothed = _training_loss(tmp_path, "train.label_smoothing=0.2")[0]
    expected = F.cross_entropy(logits, labels, weight=module.class_weights, label_smoothing=0.2)
    assert smoothed == pytest.approx(float(expected), rel=1e-5) and smoothed != pytest.approx(plain)
    mixed = [_training_loss(tmp_path, "train.mixup=0.4", seed=s)[0] for s in (1, 1, 2)]
    assert mixed[0] == mixed[1] and mixed[0] != mixed[2] and all(np.isfinite(mixed))  # drawn from the seeded RNG
    with pytest.raises(ThyronetError, match="label_smoothing"):
        load_config("cpu", ["train.label_smoothing=1.0"])


class RecordWeights(L.Callback):
    """Keeps a copy of one weight after every optimiser step."""

    def __init__(self, name):
        self.name, self.seen = name, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(dict(pl_module.named_parameters())[self.name].detach().clone())


def test_weight_average_is_the_exponential_moving_average_of_the_steps(collection, tmp_path):
    split = holdout_plan(collection, 0.25, 0.25, seed=0).splits[0]
    name = "model.fc.weight"
    recorder = RecordWeights(name)
    fit(tiny_config(tmp_path, "train.ema_decay=0.6"), collection, split, tmp_path / "ema", callbacks=[recorder])
    expected = recorder.seen[0]
    for weights in recorder.seen[1:]:
        expected = 0.6 * expected + 0.4 * weights
    saved = torch.load(tmp_path / "ema" / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.allclose(saved["state_dict"][name], expected, atol=1e-6)
    assert torch.equal(saved["current_model_state"][name], recorder.seen[-1])
    assert not torch.allclose(expected, recorder.seen[-1])
    assert load_checkpoint(tmp_path / "ema" / "checkpoints" / "best.ckpt").info  # loads as any run's model
    with pytest.raises(ThyronetError, match="ema_decay"):
        load_config("cpu", ["train.ema_decay=1.5"])
