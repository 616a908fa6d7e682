"""Reading and writing thyronet checkpoints: the run's config, the network's weights and what the
run learnt beside them (calibration, segmenter, out-of-distribution gate).

Opening a model file never runs code from it: checkpoints are read with
``torch.load(weights_only=True)``, which rebuilds tensors and plain Python values (dicts, lists,
strings, numbers) and refuses anything else, and thyronet writes its checkpoints in those types
only. A checkpoint that needs a full unpickle (written by other code, or tampered with) is refused;
one that holds only numpy values or paths (older thyronet checkpoints) is rewritten in plain types by
:func:`convert_checkpoint`, which admits those data-only types by name and never unpickles in full.
"""

from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from thyronet import __version__
from thyronet.errors import DataError
from thyronet.inference.calibration import Calibration
from thyronet.inference.networks import build_classifier
from thyronet.inference.package import is_package, read_package
from thyronet.io import atomic_path
from thyronet.runs.config import RunConfig, config_from_dict
from thyronet.runs.layout import RunFolder


def read_checkpoint(path: str | Path) -> tuple[RunConfig, dict[str, torch.Tensor], dict[str, Any], Path]:
    """(run config, network state dict, thyronet info, file) of a checkpoint file, run folder or model
    package (:mod:`thyronet.inference.package`)."""
    path = Path(path)
    if is_package(path):
        return read_package(path)
    if path.is_dir():  # a run folder: its best checkpoint
        path = RunFolder(path).best
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    checkpoint = safe_load(path)
    try:
        config = config_from_dict(checkpoint["hyper_parameters"]["config"])
        state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    except Exception as error:  # key and type errors of many kinds
        raise DataError(path, f"not a thyronet checkpoint ({error.__class__.__name__}: {error})") from None
    return config, state, checkpoint.get("thyronet", {}), path


CONVERT_HINT = "If it holds only numpy values or paths (older checkpoints), `thyronet export --convert {path} --out NEW.ckpt` rewrites it"


def safe_load(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, read without running code from the file (tensors and plain types only)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:  # not a pickle of objects at all: a damaged or foreign file
            raise DataError(path, "not a thyronet checkpoint (not a readable PyTorch file)") from None
        raise DataError(path, "holds Python objects that only a full unpickle would rebuild, and a full unpickle "
                              f"can run any code ({found.group(1)}); refused. " + CONVERT_HINT.format(path=path)) from None
    except Exception as error:  # zip and torch errors of many kinds
        raise DataError(path, f"not a thyronet checkpoint ({error.__class__.__name__}: {error})") from None
    if not isinstance(checkpoint, dict):
        raise DataError(path, "not a thyronet checkpoint (no dictionary inside)")
    return checkpoint


def plain(value: Any) -> Any:
    """``value`` in the types ``weights_only`` reads back: tensors, dicts, lists, str, numbers, None."""
    if isinstance(value, torch.Tensor) or value is None or type(value) in (bool, int, float, str):
        return value  # exact types: numpy's float64 is a float subclass that weights_only refuses
    if isinstance(value, dict):
        return {k if type(k) in (int, float, str) else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no plain form")


# What older checkpoints hold beside plain types, and which only rebuild data (numpy arrays,
# scalars and dtypes, paths): --convert admits these, by name, and nothing else
CONVERTIBLE = ("numpy.ndarray", "numpy.dtype", "numpy._core.multiarray.scalar", "numpy._core.multiarray._reconstruct",
               "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct", "pathlib.Path", "pathlib.PosixPath",
               "pathlib.WindowsPath")


def _resolve(name: str) -> Any:
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def convertible_globals(path: Path) -> list[Any]:
    """The data-only types a checkpoint needs beyond plain ones; anything else is refused by name."""
    needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    refused = [name for name in needed if name not in CONVERTIBLE and not name.startswith("numpy.dtypes.")]
    if refused:
        raise DataError(path, f"holds objects that only code could rebuild ({', '.join(refused[:3])}); "
                              "not converted: re-export it from the code that wrote it")
    import numpy.dtypes

    # a numpy scalar's dtype is rebuilt through its DType class, which the scan above does not list
    dtype_classes = [getattr(numpy.dtypes, name) for name in dir(numpy.dtypes) if name.endswith("DType")]
    return [_resolve(name) for name in needed] + dtype_classes


def convert_checkpoint(old: str | Path, new: str | Path) -> Path:
    """Rewrite a checkpoint that holds numpy values or paths (older checkpoints) in plain types,
    keeping what inference reads (weights, config, calibration, gate, segmenter) and dropping the
    optimiser's resume state. Still no full unpickle: only the data-only types of ``CONVERTIBLE``
    are admitted, by name, and a checkpoint needing anything else is refused."""
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise DataError(old, "checkpoint not found")
    try:
        admitted = convertible_globals(old)
        with torch.serialization.safe_globals(admitted):
            checkpoint = torch.load(old, map_location="cpu", weights_only=True)
        kept = {key: plain(checkpoint[key]) for key in ("state_dict", "hyper_parameters", "thyronet", "epoch",
                                                        "global_step", "pytorch-lightning_version") if key in checkpoint}
        config_from_dict(kept["hyper_parameters"]["config"])
    except DataError:
        raise
    except Exception as error:  # unpickling, zip, key and type errors of many kinds
        raise DataError(old, f"cannot be converted ({error.__class__.__name__}: {error})") from None
    with atomic_path(new) as tmp:
        torch.save(kept, tmp)
    safe_load(new)  # what was written reads back with no admitted type at all
    return new


def load_network(path: str | Path) -> tuple[nn.Module, RunConfig, dict[str, Any], Path]:
    """(classifier in eval mode, run config, thyronet info, file) of a classifier checkpoint."""
    config, state, info, path = read_checkpoint(path)
    if config.task != "classify":
        raise DataError(path, f"is a {config.task} checkpoint, not a classifier (use `thyronet segment`)")
    model = build_classifier(config, pretrained=False)  # the checkpoint's weights follow
    model.load_state_dict(state)
    model.eval()
    return model, config, info, path


def save_calibration(path: Path, calibration: Calibration, extra: dict[str, Any]) -> None:
    """Store the calibration (and provenance) inside a checkpoint, atomically."""
    checkpoint = safe_load(path)
    checkpoint["thyronet"] = {"version": __version__, "calibration": calibration.to_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
