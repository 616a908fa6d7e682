"""DDP through Lightning: two CPU processes (gloo) train one epoch on tiny data via the CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

THYRONET = shutil.which("thyronet", path=str(Path(sys.executable).parent)) or shutil.which("thyronet")


@pytest.mark.skipif(THYRONET is None, reason="the thyronet console script is not installed")
@pytest.mark.slow
def test_ddp_two_cpu_processes_train_one_epoch(training_ddti, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        THYRONET, "train", "--config", "frame", "--data", str(training_ddti), "--model", "resnet18", "--epochs", "1",
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--output-dir", str(tmp_path),
        "--set", "data.preprocess.size=32", "--set", "train.batch_size=4", "--set", "trainer.threads=1",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = next(tmp_path.iterdir())
    results = json.loads((run / "results.json").read_text())
    assert results["val"]["case"]["n"] > 0
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 2  # header + the one epoch
    assert results["world_size"] == 2
