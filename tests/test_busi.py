"""The BUSI reader on synthetic BUSI folders: classes, masks, near-duplicate grouping and splits."""

import numpy as np
import pytest

from synthetic import busi_image, make_busi
from thyronet.apps.cli import main
from thyronet.data import kfold_plan, open_source
from thyronet.data.busi import duplicate_report, is_busi_folder
from thyronet.data.neardup import NEAR_DUPLICATE_BITS, hamming, near_duplicate_groups, perceptual_hash
from thyronet.errors import DataError


@pytest.fixture(scope="module")
def busi(tmp_path_factory):
    return make_busi(tmp_path_factory.mktemp("busi"),
                     duplicates=[("benign_1", "benign_6"), ("malignant_2", "malignant_5"), ("benign_3", "malignant_6")])


def test_classes_labels_and_masks(busi):
    collection = open_source(busi)
    assert collection.source == "busi" and is_busi_folder(busi)
    by_name = {r.path.stem: r for r in collection.images}
    assert len(by_name) == 5 + 4 + 2 + 3
    assert {r.attributes["class"] for r in collection.images} == {"benign", "malignant", "normal"}
    assert by_name["benign_2"].label == 0 and by_name["malignant_1"].label == 1 and by_name["normal_1"].label is None
    assert by_name["benign_2"].outlines and not by_name["normal_1"].outlines  # all-zero mask: no outline
    assert not any(r.path.name.endswith("_mask.png") for r in collection.images)  # masks are not images


def test_near_duplicates_share_a_case_and_stay_on_one_side(busi):
    collection = open_source(busi)
    case = {r.path.stem: r.case_id for r in collection.images}
    assert case["benign_1"] == case["benign_6"] and case["malignant_2"] == case["malignant_5"]
    assert case["benign_3"] == case["malignant_6"]  # one image under two labels: one case, reported
    assert len({case[n] for n in ("benign_1", "benign_2", "benign_4", "malignant_1", "normal_1")}) == 5
    report = duplicate_report(collection)
    assert report == {"images": 14, "cases": 11, "near_duplicate_groups": 3, "images_in_groups": 6,
                      "groups_with_mixed_classes": 1}
    for split in kfold_plan(collection, 3, seed=0).splits:
        sides = {}
        for record in collection.images:
            side = "train" if record.case_id in split.train else "val" if record.case_id in split.val else "test"
            sides.setdefault(record.case_id, set()).add(side)
        assert all(len(s) == 1 for s in sides.values())


def test_perceptual_hash_tolerates_re_encoding_and_separates_scans():
    image, _ = busi_image(1, False)
    brighter = np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)
    assert hamming(perceptual_hash(image), perceptual_hash(brighter)) <= 2
    others = [perceptual_hash(busi_image(seed, False)[0]) for seed in range(2, 12)]
    assert min(hamming(perceptual_hash(image), other) for other in others) > NEAR_DUPLICATE_BITS
    assert near_duplicate_groups([0b0, 0b1, 0b11 << 20, 0b111 << 20], max_bits=1) == [0, 0, 2, 2]


def test_bad_rows_are_named(busi, tmp_path, capsys):
    broken = tmp_path / "busi"
    broken.mkdir()
    (broken / "labels.csv").write_text("path,class,mask\nx.jpg,cyst,\nmissing.jpg,benign,\n")
    collection = open_source(broken)
    problems = [str(issue) for issue in collection.issues]
    assert any("line 2: unknown class 'cyst'" in p for p in problems) and any("missing.jpg: file not found" in p for p in problems)
    with pytest.raises(DataError, match="unknown class"):
        open_source(broken, strict=True)


def test_data_summary_reports_classes_and_duplicates(busi, capsys):
    assert main(["data", "summary", str(busi)]) == 0
    out = capsys.readouterr().out
    assert "classes by image: {'benign': 6, 'malignant': 6, 'normal': 2}" in out
    assert "near-duplicate groups: 3 holding 6 images" in out and "1 groups mix classes" in out
