"""A site's work in a round, with thyronet's own training code: train the recipe for a few local
epochs from the global weights (Lightning, the run's loss, optimiser, sampler and augmentation),
and score the global model on the site's held-out cases."""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from thyronet.data.records import Collection
from thyronet.data.splits import Split
from thyronet.errors import ThyronetError
from thyronet.evaluation.metrics import binary_metrics, case_level
from thyronet.inference.calibration import Calibration
from thyronet.inference.networks import build_classifier
from thyronet.inference.predictor import LoadedModel, predict_records
from thyronet.inference.segmenter import Segmenter
from thyronet.runs.config import RunConfig
from thyronet.training.datamodule import UltrasoundDataModule
from thyronet.training.module import ThyroNetModule
from thyronet.training.train import build_trainer, run_trainer

log = logging.getLogger(__name__)


def check_recipe(config: RunConfig) -> None:
    """Refuse what federated training does not do (yet), in one line."""
    if config.task != "classify" or config.multiclass:
        raise ThyronetError("federated training takes benign-vs-malignant classifier recipes (task: classify, two classes)")
    roi = config.data.roi
    if roi.mode == "predicted" and not roi.segmenter:
        raise ThyronetError("data.roi.mode=predicted needs a trained segmenter at every site (data.roi.segmenter=RUN); "
                            "or federate on the expert's region (data.roi.mode=expert) or the whole frame (none)")


def site_recipe(config: RunConfig, round_number: int, local_epochs: int) -> RunConfig:
    """The server's recipe as a site trains it in a round: ``local_epochs`` epochs, a seed of its
    own per round (so that the sampler and augmentation differ from round to round), no early
    stopping (no validation during local training), and no initial weights of its own (the
    global weights follow)."""
    local = copy.deepcopy(config)
    local.train.epochs = local_epochs
    local.train.early_stopping_patience = None
    local.seed = config.seed + 1000 * round_number
    local.model.weights, local.model.pretrained = None, None
    return local


class ProximalTerm(L.Callback):
    """FedProx's proximal term mu/2 ||w - w_global||^2, added to the loss through its gradient
    mu (w - w_global), after each backward pass and before the optimiser's step."""

    def __init__(self, mu: float, global_state: Mapping[str, torch.Tensor]) -> None:
        self.mu = mu
        self.anchor = {k: v.detach().clone() for k, v in global_state.items()}

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, parameter in pl_module.model.named_parameters():
            if parameter.grad is not None:
                parameter.grad.add_(parameter.detach() - self.anchor[name].to(parameter.device), alpha=self.mu)


def region_segmenter(config: RunConfig) -> Segmenter | None:
    """The trained segmenter a predicted region of interest names (the same run at every site)."""
    roi = config.data.roi
    return Segmenter.load(roi.segmenter) if roi.mode == "predicted" and roi.segmenter else None


@dataclass
class LocalResult:
    state: dict[str, torch.Tensor]
    images: int
    loss: float


def train_locally(config: RunConfig, collection: Collection, split: Split, global_state: Mapping[str, torch.Tensor],
                  proximal_mu: float = 0.0) -> LocalResult:
    """Train ``config`` (a :func:`site_recipe`) from ``global_state`` on the site's training cases."""
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    L.seed_everything(config.seed, verbose=False)
    datamodule = UltrasoundDataModule(config, collection, split)
    weights = datamodule.class_weights().tolist() if config.train.imbalance == "weighted_loss" else None
    module = ThyroNetModule(config.to_dict(), weights)
    module.model.load_state_dict(global_state)
    callbacks = [ProximalTerm(proximal_mu, global_state)] if proximal_mu > 0 else []
    # the trainer's checkpoints and logs are the site's scratch, gone after the round
    with tempfile.TemporaryDirectory(prefix="thyronet-site-") as scratch, warnings.catch_warnings():
        # the site scores the global model itself (evaluate_locally), not in the local epochs
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        trainer = build_trainer(config, Path(scratch), callbacks, monitor=None)
        if not run_trainer(trainer, Path(scratch), module, False, train_dataloaders=datamodule.train_dataloader()):
            raise KeyboardInterrupt
    loss = trainer.callback_metrics.get("train/loss")
    return LocalResult({k: v.detach().cpu() for k, v in module.model.state_dict().items()},
                       len(datamodule.dataset("train")), float("nan") if loss is None else float(loss))


def evaluate_locally(config: RunConfig, collection: Collection, split: Split, global_state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The global model's case-level metrics on the site's held-out cases (threshold 0.5)."""
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    model = build_classifier(config, pretrained=False)
    model.load_state_dict(global_state)
    model.eval()
    segmenter = region_segmenter(config)
    records = UltrasoundDataModule(config, collection, split, segmenter).records("val")
    predictions = predict_records(LoadedModel(model, config, Calibration(), segmenter=segmenter), records)
    _, labels, probs = case_level(predictions.case_ids, predictions.labels, predictions.probs)
    metrics = binary_metrics(labels, probs, ci=False)
    return {"n": metrics["n"], "auroc-case": metrics["auroc"], "balanced-acc-case": metrics["balanced_acc"],
            "malignant-cases": metrics["n_malignant"]}
