from collections import Counter

import pytest

from synthetic import make_ddti
from thyronet.data import SplitPlan, holdout_plan, kfold_plan, open_source
from thyronet.data.splits import Split, receipt
from thyronet.errors import ThyronetError


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return open_source(make_ddti(tmp_path_factory.mktemp("s"), benign=15, malignant=45, unlabelled=3))


def _malignant_share(collection, cases):
    labels = collection.case_labels()
    return sum(labels[c] for c in cases) / len(cases)


def test_kfold_never_shares_a_case_and_covers_every_labelled_case_once(collection):
    plan = kfold_plan(collection, folds=5, seed=1)
    tested = Counter(c for split in plan.splits for c in split.test)
    labelled = {c for c, lab in collection.case_labels().items() if lab is not None}
    assert set(tested) == labelled and set(tested.values()) == {1}
    overall = _malignant_share(collection, sorted(labelled))
    for split in plan.splits:
        split.check_disjoint()
        assert set(split.train) | set(split.val) | set(split.test) == labelled
        assert abs(_malignant_share(collection, split.test) - overall) <= 0.1


def test_holdout_is_stratified_and_disjoint(collection):
    split = holdout_plan(collection, 0.2, 0.2, seed=3).splits[0]
    split.check_disjoint()
    assert len(split.test) == 12 and 8 <= len(split.val) <= 11
    for side in (split.train, split.val, split.test):
        assert abs(_malignant_share(collection, side) - 0.75) <= 0.1


def test_unlabelled_cases_never_enter_a_split(collection):
    split = holdout_plan(collection).splits[0]
    labels = collection.case_labels()
    assert all(labels[c] is not None for side in split.sides().values() for c in side)


def test_same_seed_same_split_other_seed_other_split(collection):
    assert holdout_plan(collection, seed=5).splits[0] == holdout_plan(collection, seed=5).splits[0]
    assert holdout_plan(collection, seed=5).splits[0] != holdout_plan(collection, seed=6).splits[0]


def test_split_json_round_trip_and_leak_detection(collection, tmp_path):
    plan = kfold_plan(collection, folds=3)
    plan.save(tmp_path / "s.json")
    assert SplitPlan.load(tmp_path / "s.json").splits == plan.splits
    leaky = Split(train=["1", "2"], val=["2"], test=[])
    with pytest.raises(ThyronetError, match="leaks 1 case"):
        leaky.check_disjoint()


def test_receipt_prints_counts_and_zero_overlap(collection):
    text = receipt(collection, holdout_plan(collection).splits[0])
    assert "cases on more than one side: 0" in text and "train:" in text and "test:" in text


def test_too_few_minority_cases_is_a_clear_error(tmp_path):
    small = open_source(make_ddti(tmp_path / "x", benign=2, malignant=5, unlabelled=0))
    with pytest.raises(ThyronetError, match="cannot make 5 stratified folds"):
        kfold_plan(small, folds=5)
