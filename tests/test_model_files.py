"""Model files that cannot run code: checkpoints open without a full unpickle, an unsafe one is
refused by every command, an old one converts knowingly, and a model package round-trips."""

from __future__ import annotations

import csv
import json
import pathlib
import shutil

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from thyronet.apps.cli import main
from thyronet.apps.serve.app import create_app
from thyronet.errors import DataError
from thyronet.inference.checkpoint import read_checkpoint, safe_load


class CreatesAFile:
    """Unpickled in full, this object creates a file: what a hostile checkpoint could do instead."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def hostile(tiny_run, tmp_path):
    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    marker = tmp_path / "code-ran"
    checkpoint["thyronet"]["payload"] = CreatesAFile(marker)
    path = tmp_path / "hostile.ckpt"
    torch.save(checkpoint, path)
    return path, marker


@pytest.fixture
def frame(training_ddti):
    return str(next(training_ddti.glob("*.jpg")))


def refused(capsys) -> str:
    err = capsys.readouterr().err
    assert "full unpickle" in err and "thyronet export --convert" in err and "Traceback" not in err
    return err


def test_every_command_refuses_a_checkpoint_that_would_run_code(hostile, frame, training_ddti, tmp_path, capsys):
    path, marker = hostile
    commands = [
        ["predict", str(path), frame, "--out", str(tmp_path / "p.csv")],
        ["evaluate", str(path), str(training_ddti), "--out", str(tmp_path / "e")],
        ["explain", str(path), frame, "--out", str(tmp_path / "x")],
        ["segment", str(path), frame, "--out", str(tmp_path / "s")],
        ["export", str(path), "--onnx", str(tmp_path / "m.onnx")],
        ["export", str(path), "--package", str(tmp_path / "pkg")],
        ["export", "--convert", str(path), "--out", str(tmp_path / "converted.ckpt")],  # admits data-only types alone
        ["train", "--config", "frame", "--data", str(training_ddti), "--epochs", "1", "--output-dir", str(tmp_path / "r"),
         "--set", "data.roi.mode=predicted", "--set", f"data.roi.segmenter={path}", "--set", "data.preprocess.size=32"],
        ["train", "--config", "frame", "--data", str(training_ddti), "--epochs", "1", "--output-dir", str(tmp_path / "w"),
         "--set", f"model.weights={path}", "--set", "data.preprocess.size=32", "--model", "resnet18"],
    ]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(path) in err, (command, err)
    with pytest.raises(DataError, match="full unpickle"):
        create_app(path)
    assert not marker.exists()


def test_the_refusal_says_how_to_convert(hostile, frame, tmp_path, capsys):
    path, _ = hostile
    assert main(["predict", str(path), frame, "--out", str(tmp_path / "p.csv")]) == 2
    refused(capsys)


def test_an_old_checkpoint_converts_knowingly_and_then_predicts_the_same(tiny_run, frame, tmp_path, capsys):
    """Numpy values inside (as older code wrote them) need a full unpickle; --convert rewrites them."""
    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["thyronet"]["calibration"] = {k: np.float64(v) if isinstance(v, float) else v
                                             for k, v in checkpoint["thyronet"]["calibration"].items()}
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert main(["predict", str(old), frame, "--out", str(tmp_path / "o.csv")]) == 2
    refused(capsys)
    assert main(["export", "--convert", str(old), "--out", str(tmp_path / "new.ckpt")]) == 0
    safe_load(tmp_path / "new.ckpt")
    assert main(["predict", str(tmp_path / "new.ckpt"), frame, "--out", str(tmp_path / "n.csv")]) == 0
    assert main(["predict", str(tiny_run), frame, "--out", str(tmp_path / "r.csv")]) == 0
    converted, original = (next(csv.DictReader(open(tmp_path / f))) for f in ("n.csv", "r.csv"))
    assert float(converted["probability"]) == pytest.approx(float(original["probability"]), abs=1e-6)


@pytest.mark.parametrize("form", ["folder", "zip"])
def test_a_package_gives_the_checkpoints_answers_and_checks_its_hashes(tiny_run, frame, tmp_path, form, capsys):
    package = tmp_path / ("package.zip" if form == "zip" else "package")
    assert main(["export", str(tiny_run), "--package", str(package)]) == 0
    for source, out in ((tiny_run, "c.csv"), (package, "k.csv")):
        assert main(["predict", str(source), frame, "--out", str(tmp_path / out)]) == 0
    original, packaged = (next(csv.DictReader(open(tmp_path / f))) for f in ("c.csv", "k.csv"))
    assert float(packaged["probability"]) == pytest.approx(float(original["probability"]), abs=1e-5)
    assert packaged["decision"] == original["decision"] and packaged["threshold"] == original["threshold"]
    config, state, info, _ = read_checkpoint(package)
    _, original_state, original_info, _ = read_checkpoint(tiny_run)
    assert info["calibration"] == original_info["calibration"] and info["ood"] == original_info["ood"]
    assert all(torch.equal(state[k], original_state[k]) for k in original_state)
    client = TestClient(create_app(package))
    assert client.get("/health").status_code == 200
    if form == "folder":
        card = (package / "model-card.md").read_text()
        assert "AUROC" in card and "not a diagnosis" in card
        manifest = json.loads((package / "manifest.json").read_text())
        assert set(manifest["files"]) == {"model.safetensors", "config.yaml", "thyronet.json", "model-card.md"}

        changed = tmp_path / "changed"
        shutil.copytree(package, changed)
        weights = bytearray((changed / "model.safetensors").read_bytes())
        weights[-1] ^= 1
        (changed / "model.safetensors").write_bytes(bytes(weights))
        assert main(["predict", str(changed), frame, "--out", str(tmp_path / "x.csv")]) == 2
        assert "model.safetensors: its SHA-256 does not match the package manifest" in capsys.readouterr().err
        (changed / "model.safetensors").unlink()
        assert main(["predict", str(changed), frame, "--out", str(tmp_path / "x.csv")]) == 2
        assert "missing: model.safetensors" in capsys.readouterr().err
        shutil.copy(package / "model.safetensors", changed / "model.safetensors")
        (changed / "notes.txt").write_text("added")
        assert main(["predict", str(changed), frame, "--out", str(tmp_path / "x.csv")]) == 2
        assert "not in the manifest: notes.txt" in capsys.readouterr().err
