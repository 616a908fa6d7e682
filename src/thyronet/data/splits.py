"""Case-grouped, label-stratified splits that never put one case on both sides.

Splits are made over labelled cases, saved as JSON (case ids per side, seed, data fingerprint)
and re-checked whenever they are loaded or used.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from thyronet.data.records import MALIGNANT, Collection
from thyronet.errors import ThyronetError
from thyronet.io import write_text_atomic

SIDES = ("train", "val", "test")


@dataclass
class Split:
    """Case ids per side; ``test`` is empty for a plain train/val split."""

    train: list[str]
    val: list[str]
    test: list[str] = field(default_factory=list)

    def sides(self) -> dict[str, list[str]]:
        return {name: getattr(self, name) for name in SIDES}

    def check_disjoint(self) -> None:
        """Raise if any case id stands on two sides."""
        sides = self.sides()
        for i, first in enumerate(SIDES):
            for second in SIDES[i + 1 :]:
                shared = set(sides[first]) & set(sides[second])
                if shared:
                    raise ThyronetError(
                        f"split leaks {len(shared)} case(s) between {first} and {second}: {sorted(shared)[:5]}"
                    )


@dataclass
class SplitPlan:
    """One or more splits of the same data (several for K-fold), with how they were made."""

    kind: str
    seed: int
    splits: list[Split]
    data_fingerprint: str | None = None

    def save(self, path: str | Path) -> None:
        write_text_atomic(Path(path), json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> SplitPlan:
        try:
            raw = json.loads(Path(path).read_text())
            plan = cls(raw["kind"], raw["seed"], [Split(**s) for s in raw["splits"]], raw.get("data_fingerprint"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ThyronetError(f"{path}: not a thyronet split file ({error})") from None
        for split in plan.splits:
            split.check_disjoint()
        return plan


def _labelled_cases(collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    labels = {c: lab for c, lab in collection.case_labels().items() if lab is not None}
    if len(set(labels.values())) < 2:
        raise ThyronetError(f"{collection.root}: need labelled cases of both classes to split, found {Counter(labels.values())}")
    cases = np.array(sorted(labels))
    return cases, np.array([labels[c] for c in cases])


def _grouped_folds(cases: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Indices of each fold's cases, stratified by label (one row per case, so groups are cases)."""
    if folds < 2:
        raise ThyronetError(f"need at least 2 folds, got {folds}")
    minority = int(min(Counter(labels.tolist()).values()))
    if minority < folds:
        raise ThyronetError(f"only {minority} case(s) in the smaller class: cannot make {folds} stratified folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(cases, labels, groups=cases)]


def _val_folds(labels: np.ndarray, val_fraction: float) -> int:
    """Folds whose first is the validation part: 1/val_fraction, fewer if the smaller class is
    too small to put one case of it in every fold (tiny data sets only)."""
    minority = int(min(Counter(labels.tolist()).values()))
    return max(2, min(round(1 / val_fraction), minority))


def kfold_plan(collection: Collection, folds: int = 5, seed: int = 42, val_fraction: float = 0.2) -> SplitPlan:
    """K-fold cross-validation: split k tests on fold k; its validation cases (for checkpoint
    selection and calibration) are carved out of the other folds, so the test fold is never seen."""
    cases, labels = _labelled_cases(collection)
    splits = []
    for fold, test in enumerate(_grouped_folds(cases, labels, folds, seed)):
        rest = np.setdiff1d(np.arange(len(cases)), test)
        val_folds = _val_folds(labels[rest], val_fraction)
        val = rest[_grouped_folds(cases[rest], labels[rest], val_folds, seed + 1 + fold)[0]]
        train = np.setdiff1d(rest, val)
        splits.append(Split(train=cases[train].tolist(), val=cases[val].tolist(), test=cases[test].tolist()))
    return SplitPlan(f"kfold-{folds}", seed, splits)


def holdout_plan(collection: Collection, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 42) -> SplitPlan:
    """One train/val/test split by case: the first fold of a round(1/test_fraction)-fold plan,
    with val carved from the remaining cases (val_fraction of them); no test if test_fraction is 0."""
    if test_fraction <= 0:
        cases, labels = _labelled_cases(collection)
        val = _grouped_folds(cases, labels, _val_folds(labels, val_fraction), seed)[0]
        train = np.setdiff1d(np.arange(len(cases)), val)
        return SplitPlan("holdout", seed, [Split(train=cases[train].tolist(), val=cases[val].tolist())])
    plan = kfold_plan(collection, max(2, round(1 / test_fraction)), seed, val_fraction)
    return SplitPlan("holdout", seed, plan.splits[:1])


def receipt(collection: Collection, split: Split, class_names: Sequence[str] = ("benign", "malignant")) -> str:
    """A printed check of a split: cases and images per side and class, and the overlap (0)."""
    split.check_disjoint()
    labels = collection.case_labels()
    images_per_case = Counter(r.case_id for r in collection.images)
    lines = []
    for side, cases in split.sides().items():
        if not cases:
            continue
        by_label = Counter(labels[c] for c in cases)
        counts = ", ".join(f"{by_label[index]} {name}" for index, name in enumerate(class_names))
        if len(class_names) == 2:
            counts += f", {by_label[MALIGNANT] / max(1, len(cases)):.0%} malignant"
        images = sum(images_per_case[c] for c in cases)
        lines.append(f"{side:>5}: {len(cases):4d} cases ({counts}), {images} images")
    overlap = sum(len(set(a) & set(b)) for i, a in enumerate(split.sides().values()) for b in list(split.sides().values())[i + 1 :])
    lines.append(f"cases on more than one side: {overlap}")
    return "\n".join(lines)
