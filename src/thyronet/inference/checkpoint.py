"""Reading and writing thyronet checkpoints: the run's config, the network's weights and what the
run learnt beside them (calibration, segmenter, out-of-distribution gate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from thyronet import __version__
from thyronet.errors import DataError
from thyronet.inference.calibration import Calibration
from thyronet.inference.networks import build_classifier
from thyronet.io import atomic_path
from thyronet.runs.config import RunConfig, config_from_dict
from thyronet.runs.layout import RunFolder


def read_checkpoint(path: str | Path) -> tuple[RunConfig, dict[str, torch.Tensor], dict[str, Any], Path]:
    """(run config, network state dict, thyronet info, file) of a checkpoint file or run folder."""
    path = Path(path)
    if path.is_dir():  # a run folder: its best checkpoint
        path = RunFolder(path).best
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        # thyronet checkpoints hold the run config (plain Python objects) beside the tensors
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        config = config_from_dict(checkpoint["hyper_parameters"]["config"])
        state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    except Exception as error:  # unpickling, zip and key errors of many kinds
        raise DataError(path, f"not a thyronet checkpoint ({error.__class__.__name__}: {error})") from None
    return config, state, checkpoint.get("thyronet", {}), path


def load_network(path: str | Path) -> tuple[nn.Module, RunConfig, dict[str, Any], Path]:
    """(classifier in eval mode, run config, thyronet info, file) of a classifier checkpoint."""

    config, state, info, path = read_checkpoint(path)
    if config.task != "classify":
        raise DataError(path, f"is a {config.task} checkpoint, not a classifier (use `thyronet segment`)")
    model = build_classifier(config)
    model.load_state_dict(state)
    model.eval()
    return model, config, info, path


def save_calibration(path: Path, calibration: Calibration, extra: dict[str, Any]) -> None:
    """Store the calibration (and provenance) inside a checkpoint, atomically."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["thyronet"] = {"version": __version__, "calibration": calibration.to_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
