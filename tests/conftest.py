"""Shared fixtures: synthetic data sources in temporary folders, and the real DDTI location."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import synthetic

REAL_DDTI = Path(os.environ.get("THYRONET_DDTI", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ddti"))


@pytest.fixture(scope="session")
def ddti_dir(tmp_path_factory) -> Path:
    return synthetic.make_ddti(tmp_path_factory.mktemp("ddti"))


@pytest.fixture(scope="session")
def training_ddti(tmp_path_factory) -> Path:
    """A slightly larger synthetic DDTI for training tests (enough cases for 3 folds)."""
    return synthetic.make_ddti(tmp_path_factory.mktemp("ddti_train"), benign=9, malignant=9, unlabelled=1)


@pytest.fixture(scope="session")
def tiny_run(training_ddti, tmp_path_factory) -> Path:
    """The run folder of a 1-epoch whole-frame ResNet18 (48 px, 1 channel) trained on the synthetic DDTI."""
    from thyronet.apps.cli import main

    out = tmp_path_factory.mktemp("tiny-run")
    assert main(["train", "--config", "frame", "--data", str(training_ddti), "--model", "resnet18", "--epochs", "1",
                 "--set", "data.preprocess.size=48", "--set", "train.batch_size=8", "--set", "trainer.threads=1",
                 "--output-dir", str(out)]) == 0
    return next(out.iterdir())


@pytest.fixture
def real_ddti() -> Path:
    if not (REAL_DDTI / "1.xml").exists():
        pytest.skip(f"real DDTI data not found at {REAL_DDTI}")
    return REAL_DDTI
