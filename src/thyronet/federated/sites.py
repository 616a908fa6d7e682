"""A site's data: its own split by case, its description for the server, and (for a simulation)
one data set dealt out by case to several sites."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Literal

import numpy as np

from thyronet.data.records import Collection
from thyronet.data.splits import Split, holdout_plan
from thyronet.errors import ThyronetError
from thyronet.federated.exchange import SiteInfo
from thyronet.runs.config import RunConfig
from thyronet.training.provenance import data_fingerprint

SplitMode = Literal["iid", "label"]
MIN_CASES_PER_CLASS = 2  # a site's own validation needs a case of each class, and so does its training


def site_split(config: RunConfig, collection: Collection) -> Split:
    """The site's train/validation split by case (``split.val_fraction``, the run's split seed):
    validation is the site's held-out set, on which the global model is scored."""
    return holdout_plan(collection, config.split.val_fraction, 0.0, config.split_seed).splits[0]


def describe_site(name: str, collection: Collection, split: Split) -> SiteInfo:
    """What the server learns of a site: its name, its data's fingerprint, counts of cases and images."""
    labelled = collection.labelled
    counts = Counter(label for label in collection.case_labels().values() if label is not None)
    return SiteInfo(name, data_fingerprint(labelled), sum(counts.values()), len(labelled), counts[0], counts[1],
                    len(split.train), len(split.val))


def subset(collection: Collection, cases: list[str]) -> Collection:
    """The part of a collection that holds ``cases`` (all their images)."""
    wanted = set(cases)
    return dataclasses.replace(collection, images=collection.subset(cases), issues=[],
                               case_attributes={c: a for c, a in collection.case_attributes.items() if c in wanted})


def partition(collection: Collection, sites: int, mode: SplitMode = "iid", seed: int = 42) -> list[list[str]]:
    """The labelled cases dealt out to ``sites`` sites, every image of a case at one site.

    ``iid``: each class shuffled and dealt in turn, so every site has about the data set's label
    ratio. ``label``: non-IID by label ratio, site k of n receiving a share of the benign cases
    proportional to k+1 and of the malignant ones to n-k, so that the first site is mostly
    malignant and the last mostly benign (the skew grows with n)."""
    if sites < 2:
        raise ThyronetError(f"--sites: a federation needs at least 2 sites, got {sites}")
    labels = {c: lab for c, lab in collection.case_labels().items() if lab is not None}
    rng = np.random.default_rng(seed)
    dealt: list[list[str]] = [[] for _ in range(sites)]
    for label in (0, 1):
        cases = sorted(c for c, lab in labels.items() if lab == label)
        cases = [cases[i] for i in rng.permutation(len(cases))]
        if mode == "iid":
            for index, case in enumerate(cases):
                dealt[index % sites].append(case)
            continue
        shares = np.arange(1, sites + 1, dtype=float) if label == 0 else np.arange(sites, 0, -1, dtype=float)
        bounds = np.round(np.cumsum(shares / shares.sum()) * len(cases)).astype(int)
        for site, (start, stop) in enumerate(zip(np.r_[0, bounds[:-1]], bounds, strict=True)):
            dealt[site] += cases[start:stop]
    for site, cases in enumerate(dealt):
        counts = Counter(labels[c] for c in cases)
        if min(counts[0], counts[1]) < MIN_CASES_PER_CLASS:
            raise ThyronetError(f"{collection.root}: too few cases for {sites} sites ({mode}): site {site} would get "
                                f"{counts[0]} benign and {counts[1]} malignant cases, and each site needs at least "
                                f"{MIN_CASES_PER_CLASS} of each class")
    return [sorted(cases) for cases in dealt]
