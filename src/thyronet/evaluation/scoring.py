"""Scoring a trained model on a labelled source: a classifier's figures with intervals and plots,
or a segmenter's Dice, IoU and detection, written beside the model (``thyronet evaluate``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from thyronet.data.records import Collection
from thyronet.errors import ThyronetError
from thyronet.evaluation.segmetrics import evaluate_segmenter, format_segmentation
from thyronet.evaluation.tables import nan_to_none, result_table, write_evaluation
from thyronet.inference.backends import load_backend
from thyronet.inference.checkpoint import read_checkpoint
from thyronet.inference.ensemble import is_ensemble
from thyronet.inference.predictor import predict_records
from thyronet.inference.segmenter import Segmenter
from thyronet.io import write_text_atomic

log = logging.getLogger(__name__)


def evaluate_source(model: str | Path, collection: Collection, data: str | Path,
                    out: str | Path | None = None) -> tuple[dict[str, Any], str, Path]:
    """(metrics, printable table, output folder) of a checkpoint, run folder, package, CV folder
    (its fold ensemble) or ONNX export on ``collection``, read from ``data``."""
    target = Path(model)
    backend = load_backend(target) if target.suffix.lower() == ".onnx" or is_ensemble(target) else None
    if backend is not None:  # a fold ensemble or an ONNX export: its results go beside it
        config, path = backend.config, target
        home = target if target.is_dir() else target.parent
    else:
        config, _, _, path = read_checkpoint(target)
        home = path.parent.parent if path.suffix == ".ckpt" else path.parent
    if config.data.path and Path(config.data.path).resolve() == Path(data).resolve():
        log.warning("warning: this is the data the model was trained on; only its test split is unseen "
                    "(evaluate an external source, or read results.json of the run)")
    out = Path(out or home / f"eval-{Path(data).name}")
    out.mkdir(parents=True, exist_ok=True)
    if config.task == "segment":
        records = [r for r in collection.images if r.outlines]
        if not records:
            raise ThyronetError(f"{data}: no images with a nodule outline or mask to evaluate segmentation on")
        result = evaluate_segmenter(Segmenter.load(path), records, out / "segments_eval.csv")
        table = format_segmentation({"eval": result})
    else:
        records = [r for r in collection.images if r.label is not None]
        if not records:
            raise ThyronetError(f"{data}: no labelled images to evaluate (use `thyronet predict` for unlabelled ones)")
        predictor = (backend or load_backend(path)).predictor
        result = write_evaluation(predict_records(predictor, records), out, "eval")
        table = result_table({"eval": result})
    result["checkpoint"], result["data"] = str(path), str(data)
    write_text_atomic(out / "metrics.json", json.dumps(nan_to_none(result), indent=1))
    return result, table, out
