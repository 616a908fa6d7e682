"""Calibration: temperature scaling fitted on validation logits, an operating threshold chosen
for a target sensitivity, and the expected calibration error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch


def softmax_malignant(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(malignant) from 2-class logits."""
    scaled = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return torch.softmax(scaled, dim=1)[:, 1].numpy()


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 200) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T)."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T: T stays positive
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    scaled = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(scaled, torch.as_tensor(labels, dtype=torch.long)))


def threshold_for_sensitivity(labels: np.ndarray, probs: np.ndarray, target: float = 0.9) -> float:
    """The highest threshold whose sensitivity (``prob >= threshold`` counted positive) is at
    least ``target``: the most specific operating point that still meets the sensitivity."""
    positives = np.sort(probs[labels == 1])[::-1]
    if len(positives) == 0:
        return 0.5
    needed = int(np.ceil(target * len(positives)))
    return float(positives[max(needed, 1) - 1])


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted probability| over equal-width bins, weighted by size."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(labels[chosen].mean() - probs[chosen].mean())
    return float(error)


@dataclass
class Calibration:
    """What a checkpoint carries to turn logits into a calibrated decision."""

    temperature: float = 1.0
    threshold: float = 0.5
    target_sensitivity: float | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    val_ece_before: float | None = None
    val_ece_after: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def decide(self, probability: float) -> str:
        """The decision at the operating threshold: the one rule every caller uses."""
        return "malignant" if probability >= self.threshold else "benign"


def operating_point(labels: np.ndarray, probs: np.ndarray, target_sensitivity: float, temperature: float = 1.0) -> Calibration:
    """The threshold chosen on validation probabilities for the target sensitivity, with the
    sensitivity and specificity it gives there."""
    threshold = threshold_for_sensitivity(labels, probs, target_sensitivity)
    predicted = probs >= threshold
    positives, negatives = labels == 1, labels == 0
    return Calibration(
        temperature=temperature,
        threshold=threshold,
        target_sensitivity=target_sensitivity,
        val_sensitivity=float(predicted[positives].mean()) if positives.any() else None,
        val_specificity=float((~predicted[negatives]).mean()) if negatives.any() else None,
    )


def calibrate(logits: np.ndarray, labels: np.ndarray, target_sensitivity: float = 0.9) -> Calibration:
    """Fit the temperature and the operating threshold on validation logits."""
    temperature = fit_temperature(logits, labels)
    probs = softmax_malignant(logits, temperature)
    return replace(
        operating_point(labels, probs, target_sensitivity, temperature),
        val_ece_before=expected_calibration_error(labels, softmax_malignant(logits)),
        val_ece_after=expected_calibration_error(labels, probs),
    )
