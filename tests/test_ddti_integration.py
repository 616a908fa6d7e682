"""Integration tests on the real DDTI data in ../shared/data/ddti (skipped where it is absent)."""

import json

import pytest

from thyronet.apps.cli import main
from thyronet.data import holdout_plan, kfold_plan, open_source

pytestmark = pytest.mark.ddti


def test_real_counts(real_ddti):
    collection = open_source(real_ddti)
    assert len(collection.case_ids()) == 389
    assert len(collection.images) == 474
    assert collection.label_counts("case") == {"benign": 51, "malignant": 246, "unlabelled": 92}
    assert collection.label_counts("image") == {"benign": 60, "malignant": 287, "unlabelled": 127}
    assert [(i.path.name, "referenced by 142.xml" in i.problem) for i in collection.issues] == [("142_2.jpg", True)]


def test_real_summary_cli(real_ddti, capsys):
    assert main(["data", "summary", str(real_ddti), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["cases"], summary["images"], summary["labelled_cases"], summary["labelled_images"]) == (389, 474, 297, 347)
    assert summary["descriptors_by_case"]["tirads"] == {"(empty)": 92, "2": 37, "3": 14, "4a": 85, "4b": 75, "4c": 56, "5": 30}
    assert summary["images_per_case"] == {"1": 319, "2": 58, "3": 10, "4": 1, "5": 1}
    # normalised vocabularies: no spelling variants survive
    assert set(summary["descriptors_by_case"]["calcifications"]) == {"(empty)", "none", "microcalcifications", "macrocalcifications"}
    assert "ill- defined" not in summary["descriptors_by_case"]["margins"]


def test_real_splits_never_share_a_case(real_ddti):
    collection = open_source(real_ddti)
    for split in kfold_plan(collection, 5).splits + holdout_plan(collection).splits:
        split.check_disjoint()
        images = {side: {r.path.name for r in collection.subset(cases)} for side, cases in split.sides().items()}
        assert not (images["train"] & images["test"]) and not (images["train"] & images["val"])
