"""A model package for sharing: a folder (or the same files in a ``.zip``) that holds no pickle.

    model.safetensors       the classifier's weights
    segmenter.safetensors   the segmenter's weights, for a run that finds the nodule itself
    config.yaml             the run's resolved config
    segmenter.yaml          the segmenter's config
    thyronet.json           calibration, operating threshold, out-of-distribution gate, provenance
    model-card.md           what the model is, its data and its figures with intervals (a stub to complete)
    manifest.json           each file's SHA-256

Reading one checks every file against the manifest first (a changed, missing or extra file is an
error naming it), then rebuilds what a checkpoint would give: :func:`read_package` returns the
same (config, weights, info, path) as :func:`thyronet.inference.checkpoint.read_checkpoint`, so
every command that takes a run folder takes a package. Writing one: :mod:`thyronet.apps.export`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load as load_safetensors

from thyronet.errors import DataError, ThyronetError
from thyronet.runs.config import RunConfig, config_from_dict

MANIFEST = "manifest.json"
FORMAT = "thyronet-model-package/1"


def is_package(path: str | Path) -> bool:
    """A package folder (with its manifest) or a ``.zip`` of one."""
    path = Path(path)
    return (path.is_dir() and (path / MANIFEST).is_file()) or (path.is_file() and path.suffix == ".zip")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_files(path: Path) -> dict[str, bytes]:
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                return {name: archive.read(name) for name in archive.namelist()}
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(path, f"not a readable zip file ({error})") from None
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def verified_files(path: Path) -> dict[str, bytes]:
    """The package's files, each checked against its manifest."""
    files = _read_files(path)
    try:
        manifest = json.loads(files[MANIFEST])
        expected: dict[str, str] = manifest["files"]
    except (KeyError, ValueError, TypeError):
        raise DataError(path, f"not a thyronet model package (no readable {MANIFEST})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(path, f"package format {manifest.get('format')!r} is not {FORMAT!r}")
    missing = sorted(set(expected) - set(files))
    if missing:
        raise DataError(path, f"files named in the manifest are missing: {', '.join(missing)}")
    extra = sorted(set(files) - set(expected) - {MANIFEST})
    if extra:
        raise DataError(path, f"files not in the manifest: {', '.join(extra)}")
    for name, digest in expected.items():
        if sha256(files[name]) != digest:
            raise DataError(path / name, "its SHA-256 does not match the package manifest: the file was changed")
    return files


def read_package(path: str | Path) -> tuple[RunConfig, dict[str, torch.Tensor], dict[str, Any], Path]:
    """(run config, classifier weights, thyronet info, path) of a package, as a checkpoint gives them."""
    path = Path(path)
    files = verified_files(path)
    try:
        config = config_from_dict(yaml.safe_load(files["config.yaml"]))
        state = load_safetensors(files["model.safetensors"])
        info = json.loads(files["thyronet.json"])
        if "segmenter.safetensors" in files:
            info["segmenter"] = {"config": yaml.safe_load(files["segmenter.yaml"]),
                                 "state_dict": load_safetensors(files["segmenter.safetensors"]),
                                 "source": info.pop("segmenter_source", "")}
    except ThyronetError:
        raise
    except Exception as error:  # YAML, JSON and safetensors errors of many kinds
        raise DataError(path, f"not a readable thyronet model package ({error.__class__.__name__}: {error})") from None
    return config, state, info, path
