"""Multi-class classification (``data.classes``): metrics, relabelling by class, and BUSI's
benign/malignant/normal cross-validated end to end on a synthetic folder."""

import json

import numpy as np
import pytest

from synthetic import make_busi, make_ddti
from thyronet.apps.cli import main
from thyronet.data import open_source
from thyronet.data.records import relabel_by_class
from thyronet.errors import ThyronetError
from thyronet.evaluation.multiclass import macro_auroc, multiclass_metrics

CLASSES = ["benign", "malignant", "normal"]


def test_metrics_against_a_worked_example():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.1, .8, .1], [.1, .2, .7], [.5, .1, .4]])
    result = multiclass_metrics(labels, probs, CLASSES, ci=False)
    # predicted 0, 1, 1, 1, 2, 0: one benign and one normal wrong
    assert result["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert result["acc"] == pytest.approx(4 / 6) and result["majority_acc"] == pytest.approx(2 / 6)
    assert result["balanced_acc"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert result["per_class"]["malignant"] == {"n": 2, "recall": 1.0, "auroc": 1.0}
    # benign against the rest: scores .8 .3 vs .2 .1 .1 .5 -> 7 of 8 pairs ordered right
    assert result["per_class"]["benign"]["auroc"] == pytest.approx(7 / 8)
    assert result["auroc"] == pytest.approx(np.mean([c["auroc"] for c in result["per_class"].values()]))
    # benign vs malignant among those four, by the malignant share p_m / (p_b + p_m): benign .11 .67,
    # malignant .78 .89, every pair ordered right
    assert result["pairwise_auroc"]["benign vs malignant"] == 1.0
    assert set(result["pairwise_auroc"]) == {"benign vs malignant", "benign vs normal", "malignant vs normal"}


def test_macro_auroc_is_one_for_a_perfect_ranking_and_its_interval_brackets_it():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    probs = np.eye(3)[labels] * 0.5 + rng.random((120, 3)) * 0.4
    assert macro_auroc(labels, np.eye(3)[labels]) == 1.0
    result = multiclass_metrics(labels, probs, CLASSES)
    assert result["auroc_ci_low"] <= result["auroc"] <= result["auroc_ci_high"]


def test_relabel_by_class_reads_the_class_attribute(tmp_path):
    collection = relabel_by_class(open_source(make_busi(tmp_path / "busi")), CLASSES)
    by_class = {r.attributes["class"]: r.label for r in collection.images}
    assert by_class == {"benign": 0, "malignant": 1, "normal": 2}
    # a class left out of the list is unlabelled, as BUSI's normal images are by default
    assert {r.label for r in relabel_by_class(collection, ["malignant", "benign"]).images
            if r.attributes["class"] == "normal"} == {None}
    with pytest.raises(ThyronetError, match="needs images with a class"):
        relabel_by_class(open_source(make_ddti(tmp_path / "ddti")), CLASSES)


@pytest.mark.slow
def test_three_class_cv_end_to_end_and_the_clinical_tools_refuse_it(tmp_path, capsys):
    busi = make_busi(tmp_path / "busi", benign=6, malignant=6, normal=6)
    common = ["--config", "busi", "--data", str(busi), "--model", "resnet18", "--set", "data.classes=[benign, malignant, normal]",
              "--set", "model.pretrained=null", "--set", "data.roi.mode=none", "--set", "data.preprocess.size=32",
              "--set", "train.batch_size=8", "--set", "trainer.threads=1",
              "--epochs", "1", "--folds", "3"]
    cv_dir = tmp_path / "cv"
    assert main(["cv", *common, "--out", str(cv_dir)]) == 0
    summary = json.loads((cv_dir / "cv_results.json").read_text())
    cases = len(open_source(busi).case_ids())  # near-duplicate images share a case
    assert summary["classes"] == CLASSES and summary["pooled_cases"] == cases  # every case scored once, normal ones too
    assert len(summary["case_auroc"]["folds"]) == 3 and np.array(summary["pooled_case"]["confusion"]).sum() == cases
    assert (cv_dir / "confusion_pooled.png").is_file() and not (cv_dir / "ensemble.json").exists()
    assert "macro one-vs-rest AUROC" in (cv_dir / "cv_summary.md").read_text()
    header = (cv_dir / "fold-0" / "predictions_test.csv").read_text().splitlines()[0]
    assert header == "image,case,label,predicted,prob_benign,prob_malignant,prob_normal,region"
    fold_results = json.loads((cv_dir / "fold-0" / "results.json").read_text())
    assert set(fold_results["test"]["case"]["per_class"]) == set(CLASSES)

    capsys.readouterr()
    image = next(busi.glob("normal/*.jpg"))
    assert main(["predict", str(cv_dir / "fold-0"), str(image), "--out", str(tmp_path / "p.csv")]) == 2
    assert "3-class classifier" in capsys.readouterr().err
    assert main(["compare", *common, "--models", "resnet18", "--out", str(tmp_path / "cmp")]) == 2
    assert "multi-class" in capsys.readouterr().err
