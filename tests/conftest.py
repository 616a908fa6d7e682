"""Shared fixtures: synthetic data sources in temporary folders, and the real DDTI location."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import pacs
import synthetic

# fixtures that train a model through the CLI: a test using one is in the slow tier
TRAINED_FIXTURES = {"tiny_run", "segmenter_run", "region_run"}
REAL_DDTI = Path(os.environ.get("THYRONET_DDTI", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ddti"))


def pytest_collection_modifyitems(items) -> None:
    """Tests on a trained model are marked ``slow``: ``pytest -m "not slow"`` is the fast tier; the
    README's test command runs every test."""
    for item in items:
        if TRAINED_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def service_state(tmp_path_factory) -> Path:
    """The web service's default state folder (accounts, audit trail) in a temporary folder, never
    the user's own; the subprocesses the tests start inherit it."""
    state = tmp_path_factory.mktemp("state")
    os.environ["THYRONET_STATE"] = str(state)
    return state


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


@pytest.fixture(scope="session")
def segmenter_run(training_ddti, tmp_path_factory) -> Path:
    """A U-Net segmenter (48 px, 25 epochs) trained on the synthetic DDTI's outlines."""
    from thyronet.apps.cli import main

    out = tmp_path_factory.mktemp("seg")
    assert main(["train", "--config", "segment", "--data", str(training_ddti), "--epochs", "25",
                 "--set", "data.preprocess.size=48", "--set", "train.batch_size=8", "--set", "train.lr=0.005",
                 "--set", "trainer.threads=2", "--output-dir", str(out)]) == 0
    return next(out.iterdir())


@pytest.fixture(scope="session")
def region_run(segmenter_run, training_ddti, tmp_path_factory) -> Path:
    """A 1-epoch ResNet18 on the region its segmenter finds, with descriptor heads: a run that
    takes a raw frame to a nodule mask, a probability and descriptors."""
    from thyronet.apps.cli import main

    out = tmp_path_factory.mktemp("region-run")
    assert main(["train", "--data", str(training_ddti), "--model", "resnet18", "--epochs", "1",
                 "--set", "data.preprocess.size=48", "--set", "data.roi.mode=predicted",
                 "--set", f"data.roi.segmenter={segmenter_run}", "--set", "model.descriptor_heads=true",
                 "--set", "train.batch_size=8", "--set", "trainer.threads=2", "--output-dir", str(out)]) == 0
    return next(out.iterdir())


@pytest.fixture
def real_ddti() -> Path:
    if not (REAL_DDTI / "1.xml").exists():
        pytest.skip(f"real DDTI data not found at {REAL_DDTI}")
    return REAL_DDTI


@pytest.fixture
def orthanc(tmp_path):
    """A real PACS, Orthanc on loopback (``pacs.run_orthanc``): its REST base URL and DICOM port."""
    if not pacs.ORTHANC:
        pytest.skip("Debian's orthanc is not installed")
    yield from pacs.run_orthanc(tmp_path)
