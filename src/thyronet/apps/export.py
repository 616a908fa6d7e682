"""Writing a model package (:mod:`thyronet.inference.package`) from a checkpoint or run folder."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save as save_safetensors

from thyronet import __version__
from thyronet.errors import ThyronetError
from thyronet.inference.checkpoint import read_checkpoint
from thyronet.inference.package import FORMAT, MANIFEST, sha256
from thyronet.io import atomic_path
from thyronet.runs.config import RunConfig, dump_config


def package_files(config: RunConfig, state: dict[str, torch.Tensor], info: dict[str, Any],
                  results: dict[str, Any] | None) -> dict[str, bytes]:
    """The files of a package (manifest excluded), as bytes."""
    info = dict(info)
    files: dict[str, bytes] = {"model.safetensors": save_safetensors({k: v.contiguous() for k, v in state.items()}),
                               "config.yaml": dump_config(config).encode()}
    segmenter = info.pop("segmenter", None)
    if segmenter is not None:
        files["segmenter.safetensors"] = save_safetensors({k: v.contiguous() for k, v in segmenter["state_dict"].items()})
        files["segmenter.yaml"] = yaml.safe_dump(segmenter["config"], sort_keys=False).encode()
        info["segmenter_source"] = segmenter.get("source", "")
    files["thyronet.json"] = json.dumps(info, indent=2).encode()
    files["model-card.md"] = model_card(config, info, results).encode()
    return files


def write_package(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the package of a checkpoint or run folder to ``out`` (a folder, or a ``.zip`` file)."""
    config, state, info, path = read_checkpoint(checkpoint)
    results_file = path.parent.parent / "results.json"  # a run folder's checkpoints/ sits beside it
    results = json.loads(results_file.read_text()) if results_file.is_file() else None
    files = package_files(config, state, info, results)
    manifest = {"format": FORMAT, "thyronet": __version__, "source": str(path),
                "files": {name: sha256(data) for name, data in sorted(files.items())}}
    files[MANIFEST] = json.dumps(manifest, indent=2).encode()
    out = Path(out)
    if out.suffix == ".zip":
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return out
    if out.exists() and any(out.iterdir()):
        raise ThyronetError(f"{out}: the folder exists and is not empty; give a new folder or a .zip")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
    return out


def model_card(config: RunConfig, info: dict[str, Any], results: dict[str, Any] | None) -> str:
    """A model-card stub (Mitchell et al.'s headings) with what the run knows about itself."""
    calibration = info.get("calibration", {})
    lines = [f"# Model card: {config.model.name} ({config.task})", "",
             "> A research tool and an aid to a physician, not a diagnosis.", "",
             "## Model details", "",
             f"- thyronet {info.get('version', __version__)}; network `{config.model.name}`"
             f"{f', started from {config.model.pretrained} weights' if config.model.pretrained else ''}; "
             f"input {config.data.in_chans} channel(s) at {config.data.preprocess.size} px; region of interest "
             f"`{config.data.roi.mode}`.",
             f"- Classes: {', '.join(config.class_names)}. Operating threshold "
             f"{calibration.get('threshold', 'n/a')} (chosen on validation for sensitivity {config.train.target_sensitivity}).",
             "", "## Intended use", "",
             "Decision support for thyroid nodules on B-mode ultrasound, read by a physician. Not for use without one.",
             "", "## Training data", "",
             f"- Source: `{config.data.path}`; data fingerprint `{info.get('data_fingerprint', 'n/a')}`.",
             "", "## Metrics", ""]
    if results:
        for side in ("val", "test"):
            case = (results.get(side) or {}).get("case") or {}
            if "auroc" in case:
                low, high = case.get("auroc_ci_low"), case.get("auroc_ci_high")
                interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
                lines.append(f"- {side}, per case: AUROC {case['auroc']:.3f}{interval} (95% bootstrap), "
                             f"balanced accuracy {case.get('balanced_acc', float('nan')):.3f}, "
                             f"majority-class accuracy {case.get('majority_acc', float('nan')):.3f}.")
    else:
        lines.append("- No results.json beside the checkpoint: add the figures of its evaluation here.")
    lines += ["", "## Caveats", "", "Complete this section: the population and scanners it was trained on, what it was "
              "not tested on, and the out-of-distribution gate's limits.", ""]
    return "\n".join(lines)
