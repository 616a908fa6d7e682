"""One training run: run folder, Lightning fit (or resume), then calibration and evaluation.

Run folder layout (paths from :class:`~thyronet.runs.layout.RunFolder`)::

    config.yaml  provenance.json  split.json        what was run, on what, by which code
    metrics.csv  curves.png  tensorboard/           per-epoch history
    checkpoints/best.ckpt  checkpoints/last.ckpt    best by validation case-level AUROC (Dice); latest
    results.json  predictions_{val,test}.csv        final metrics (best checkpoint, calibrated)
    confusion_*.png  roc_*.png  reliability_*.png   figures
    segments_{val,test}.csv                         segmentation runs: per-image Dice, IoU, box IoU
    segmenter/                                      a predicted region of interest: its segmenter's run
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from thyronet.data.records import Collection, ImageRecord
from thyronet.data.splits import Split, SplitPlan, receipt
from thyronet.errors import ThyronetError
from thyronet.evaluation.multiclass import evaluate_side
from thyronet.evaluation.segmetrics import evaluate_segmenter, format_segmentation
from thyronet.evaluation.tables import (
    descriptor_reliability,
    headline,
    nan_to_none,
    result_table,
    score_descriptors,
    write_evaluation,
)
from thyronet.inference.calibration import Calibration, calibrate
from thyronet.inference.checkpoint import load_network, save_calibration
from thyronet.inference.ood import FeatureGate
from thyronet.inference.predictor import LoadedModel, load_checkpoint, predict_records
from thyronet.inference.segmenter import Segmenter
from thyronet.io import write_text_atomic
from thyronet.runs.config import RunConfig, config_from_dict, dump_config, load_config
from thyronet.runs.layout import RunFolder
from thyronet.training.callbacks import AtomicCheckpointIO, EpochHistory, ProgressLine, StepSeed
from thyronet.training.datamodule import UltrasoundDataModule
from thyronet.training.module import ThyroNetModule
from thyronet.training.provenance import cpu_bf16, provenance
from thyronet.training.segmentation import SegmentationModule

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]
    completed: bool = True


RUN_DIR_ENV = "THYRONET_RUN_DIR"


def is_global_zero() -> bool:
    """Whether this process is rank 0 of a (possibly multi-process, multi-node) launch."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def new_run_dir(config: RunConfig, label: str | None = None) -> Path:
    """A fresh timestamped folder under ``output_dir``, or ``$THYRONET_RUN_DIR`` when set: DDP
    re-launches the command in each process, and every process must use the same folder."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir) / f"{stamp}-{label or config.model.name}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = run_dir.with_name(f"{stamp}-{label or config.model.name}-{suffix}")
    return run_dir


def load_run(run_dir: Path) -> tuple[RunConfig, Split]:
    """The config and split of an existing run folder (for --resume)."""
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise ThyronetError(f"{run_dir}: not a thyronet run folder (config.yaml and split.json expected)")
    config = config_from_dict(yaml.safe_load(folder.config.read_text()))
    return config, SplitPlan.load(folder.split).splits[0]


def _quiet_lightning() -> None:
    """Lightning sets its loggers to INFO on import; its banners and tips are noise in a run log."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resolve_precision(config: RunConfig) -> str:
    """``auto``: bf16-mixed on a GPU or a CPU with bf16 instructions (AMX, AVX512-BF16), where
    it is measured 2x faster; 32-true on other CPUs, where bf16 is emulated and slower."""
    if config.train.precision != "auto":
        return config.train.precision
    if config.trainer.accelerator not in ("cpu",) and torch.cuda.is_available():
        return "bf16-mixed"
    return "bf16-mixed" if cpu_bf16() else "32-true"


def build_trainer(config: RunConfig, run_dir: Path, callbacks: Sequence[L.Callback], monitor: str | None) -> L.Trainer:
    """The Lightning trainer of a run: ``best.ckpt`` by ``monitor`` (none without one), ``last.ckpt``
    to resume from, per-epoch history, seeds per step, atomic checkpoints."""
    _quiet_lightning()
    saving: list[L.Callback] = []
    if monitor:
        saving.append(ModelCheckpoint(
            dirpath=RunFolder(run_dir).checkpoints, filename="best", monitor=monitor, mode="max",
            enable_version_counter=False, auto_insert_metric_name=False,
        ))
    # Lightning's save_last refreshes last.ckpt only in epochs that improved the monitor, so the
    # latest epoch gets its own unmonitored checkpoint (what --resume continues from).
    last = ModelCheckpoint(dirpath=RunFolder(run_dir).checkpoints, filename="last", save_top_k=1,
                           every_n_epochs=config.trainer.checkpoint_every, enable_version_counter=False)
    all_callbacks: list[L.Callback] = [*saving, last, StepSeed(config.seed), EpochHistory(run_dir), ProgressLine(), *callbacks]
    if config.train.early_stopping_patience:
        all_callbacks.append(EarlyStopping(monitor, patience=config.train.early_stopping_patience, mode="max"))
    if config.train.ema_decay is not None:
        # validates with the average and saves it as the checkpoint's weights (the raw weights
        # travel beside them, for --resume)
        all_callbacks.append(EMAWeightAveraging(decay=config.train.ema_decay))
    trainer_config = config.trainer
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=trainer_config.accelerator,
        devices=trainer_config.devices,
        num_nodes=trainer_config.num_nodes,
        strategy=trainer_config.strategy,
        precision=resolve_precision(config),
        gradient_clip_val=config.train.grad_clip,
        callbacks=all_callbacks,
        logger=TensorBoardLogger(run_dir, name="tensorboard", version=""),
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    return trainer


def run_trainer(trainer: L.Trainer, run_dir: Path, module: L.LightningModule, resume: bool, **data: Any) -> bool:
    """``trainer.fit`` in ``run_dir`` (from its last checkpoint when resuming); False if interrupted."""
    previous = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes Lightning launches for DDP
    try:
        trainer.fit(module, ckpt_path=str(RunFolder(run_dir).last) if resume else None, weights_only=True, **data)
    except SystemExit:  # Lightning's answer to Ctrl-C, after its graceful shutdown
        if not trainer.interrupted:
            raise
    finally:
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
    return not trainer.interrupted


def fit(
    config: RunConfig,
    collection: Collection,
    split: Split,
    run_dir: Path,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> RunResult:
    """Train (or continue) one run in ``run_dir``; evaluate and calibrate it when it completes."""
    split.check_disjoint()
    started = time.time()
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    folder = RunFolder(run_dir)
    if resume and not folder.last.is_file():
        raise ThyronetError(f"{run_dir}: no checkpoints/last.ckpt to resume from")
    if not resume and is_global_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        labelled = [r for r in collection.images if r.label is not None]
        write_text_atomic(folder.config, dump_config(config))
        record = provenance(config.seed, labelled)
        SplitPlan("holdout", config.split_seed, [split], record["data_fingerprint"]).save(folder.split)
        write_text_atomic(folder.provenance, json.dumps(record, indent=1))
    log.info("run folder: %s\n%s", run_dir, receipt(collection, split, config.class_names))

    segmenter = region_segmenter(config, collection, split, run_dir)
    L.seed_everything(config.seed, verbose=False)
    datamodule = UltrasoundDataModule(config, collection, split, segmenter)
    module: L.LightningModule
    if config.task == "segment":
        module = SegmentationModule(config.to_dict())
    else:
        weights = datamodule.class_weights().tolist() if config.train.imbalance == "weighted_loss" else None
        module = ThyroNetModule(config.to_dict(), weights)
    trainer = build_trainer(config, run_dir, callbacks, module.monitor)
    if not run_trainer(trainer, run_dir, module, resume, datamodule=datamodule):
        log.warning("interrupted: checkpoints/last.ckpt holds the last finished epoch; "
                    "continue with  thyronet train --resume %s", run_dir)
        return RunResult(run_dir, {}, completed=False)
    if not trainer.is_global_zero:
        return RunResult(run_dir, {}, completed=True)
    if config.task == "segment":
        results = finalize_segmentation(config, datamodule, split, run_dir)
    elif config.multiclass:
        results = finalize_multiclass(config, datamodule, split, run_dir, segmenter)
    else:
        results = finalize(config, datamodule, split, run_dir, segmenter)
    results["wall_time_s"] = round(time.time() - started, 1)
    results["world_size"] = trainer.world_size  # processes that trained (DDP)
    write_text_atomic(RunFolder(run_dir).results, json.dumps(nan_to_none(results), indent=1))
    return RunResult(run_dir, results)


def region_segmenter(config: RunConfig, collection: Collection, split: Split, run_dir: Path) -> Segmenter | None:
    """The segmenter a predicted region of interest needs: the one the config names, or one
    trained (or finished, or reused) in ``run_dir/segmenter`` on the same split."""
    roi = config.data.roi
    if config.task != "classify" or roi.mode != "predicted":
        return None
    if roi.segmenter:
        return Segmenter.load(roi.segmenter)
    seg_folder = RunFolder(run_dir).segmenter
    seg_dir = seg_folder.root
    if not seg_folder.results.is_file():
        seg_config = load_config(roi.segmenter_config)
        seg_config.seed, seg_config.output_dir, seg_config.data.path = config.seed, config.output_dir, config.data.path
        seg_config.trainer = config.trainer
        log.info("training the segmenter that finds the nodule (%s config) in %s", roi.segmenter_config, seg_dir)
        result = fit(seg_config, collection, split, seg_dir, resume=seg_folder.last.is_file())
        if not result.completed:
            raise KeyboardInterrupt
    return Segmenter.load(seg_dir)


def finalize_segmentation(config: RunConfig, datamodule: UltrasoundDataModule, split: Split, run_dir: Path) -> dict[str, Any]:
    """Evaluate the best segmenter on the validation (and test) frames at their own resolution."""
    folder = RunFolder(run_dir)
    segmenter = Segmenter.load(folder.best)
    results: dict[str, Any] = {"model": config.model.name, "task": "segment"}
    for side in ("val", "test") if split.test else ("val",):
        results[side] = evaluate_segmenter(segmenter, datamodule.records(side), folder.segments(side))
    log.info("%s\nrun folder: %s", format_segmentation({k: results[k] for k in ("val", "test") if k in results}), run_dir)
    return results


def fit_gate(loaded: LoadedModel, train_records: Sequence[ImageRecord], val_features: np.ndarray) -> FeatureGate:
    """The out-of-distribution gate: the training images' features, a threshold on validation's."""
    return FeatureGate.fit(predict_records(loaded, train_records).features, val_features)


def finalize(config: RunConfig, datamodule: UltrasoundDataModule, split: Split, run_dir: Path,
             segmenter: Segmenter | None = None) -> dict[str, Any]:
    """Calibrate the best checkpoint on validation, then evaluate it on val (and test).

    The checkpoint then carries its calibration and, for a predicted region of interest, the
    segmenter, so that it takes a raw frame end to end on its own."""
    folder = RunFolder(run_dir)
    best = folder.best
    loaded = load_checkpoint(best)
    loaded.segmenter = segmenter
    val = predict_records(loaded, datamodule.records("val"))
    calibration = calibrate(val.logits, val.labels, config.train.target_sensitivity, val.case_ids)
    fingerprint = json.loads(folder.split.read_text()).get("data_fingerprint")
    extra = {"data_fingerprint": fingerprint, "run_dir": str(run_dir)}
    if segmenter is not None:
        extra["segmenter"] = segmenter.state()
    if val.features is not None:
        loaded.gate = fit_gate(loaded, datamodule.records("train"), val.features)
        extra["ood"] = loaded.gate.to_dict()
    if val.descriptors:  # which heads may show their answer as a finding (held-out agreement with the expert)
        extra["descriptor_reliability"] = descriptor_reliability(score_descriptors(val))
    save_calibration(best, calibration, extra)
    loaded.calibration = val.calibration = calibration
    results: dict[str, Any] = {"model": config.model.name, "calibration": calibration.to_dict()}
    if "descriptor_reliability" in extra:
        results["descriptor_reliability"] = extra["descriptor_reliability"]
    results["val"] = write_evaluation(val, run_dir, "val")
    if split.test:
        test = predict_records(loaded, datamodule.records("test"))
        results["test"] = write_evaluation(test, run_dir, "test")
        if segmenter is not None:  # the same classifier on the expert's boxes: what the segmenter costs
            loaded.config = copy.deepcopy(config)
            loaded.config.data.roi = dataclasses.replace(config.data.roi, mode="expert")
            results["test_expert_region"] = write_evaluation(predict_records(loaded, datamodule.records("test")),
                                                             run_dir, "test_expert_region")
    log.info("%s\nrun folder: %s\n%s", result_table({k: results[k] for k in ("val", "test") if k in results}), run_dir,
             headline(results))
    return results


def finalize_multiclass(config: RunConfig, datamodule: UltrasoundDataModule, split: Split, run_dir: Path,
                        segmenter: Segmenter | None = None) -> dict[str, Any]:
    """Evaluate the best checkpoint on validation (and test), on the segmenter's region where the
    run's region of interest is predicted."""
    model, config, _, _ = load_network(RunFolder(run_dir).best)
    # the calibration is unused: the scores come from the logits
    loaded = LoadedModel(model, config, Calibration(), segmenter=segmenter)
    names = config.class_names
    results: dict[str, Any] = {"model": config.model.name, "classes": list(names)}
    for side in ("val", "test") if split.test else ("val",):
        results[side] = evaluate_side(predict_records(loaded, datamodule.records(side)), names, run_dir, side)
    log.info("%s\nrun folder: %s", result_table({k: results[k] for k in ("val", "test") if k in results}, multiclass=True), run_dir)
    return results
