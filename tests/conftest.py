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


@pytest.fixture
def real_ddti() -> Path:
    if not (REAL_DDTI / "1.xml").exists():
        pytest.skip(f"real DDTI data not found at {REAL_DDTI}")
    return REAL_DDTI
