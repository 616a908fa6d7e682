"""Calibration: a temperature and a bias fitted on validation logits, an operating threshold
chosen for a target sensitivity, and the expected calibration error.

The bias matters because training weights the classes (or samples them) as if they were equally
frequent: the network's log-odds are then centred for a balanced population, and a temperature
alone, which can only flatten them, answers about 0.5 for everything on DDTI's 83% malignant
cases (measured: the default of 2026-11-30, 49d7b68, hit the temperature's bound, 20). Fitting
``sigmoid(log-odds / T + b)`` (Platt scaling on the logit difference) moves them back.

An operating threshold is only as good as the cases it was chosen on: with fewer than
``MIN_CASES_PER_CLASS`` of either class, or when it calls every validation case one class
(sensitivity 1 and specificity 0, or the reverse), it is refused, the threshold falls back to 0.5
on the calibrated probability, and the calibration carries a warning that every answer repeats
(measured: a fresh-machine `make run` of 2026-12-05 chose 0.77 on 48 validation cases of which 8
benign, sensitivity 1.00 and specificity 0.00, and printed it without a word; a class is counted
in cases where the caller gives each image's case, as training does: on 2026-12-06 the same split's
10 benign validation images, from 8 cases, passed a count by images)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch


def _log_odds(logits: np.ndarray) -> torch.Tensor:
    """logit_malignant - logit_benign of (N, 2) logits, in float64."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    return logits_t[:, 1] - logits_t[:, 0]


def calibrated_malignant(logits: np.ndarray, temperature: float = 1.0, bias: float = 0.0) -> np.ndarray:
    """P(malignant) = sigmoid((logit_malignant - logit_benign) / temperature + bias)."""
    return torch.sigmoid(_log_odds(logits) / temperature + bias).numpy()


def fit_platt(logits: np.ndarray, labels: np.ndarray, bias: bool = False, iterations: int = 200) -> tuple[float, float]:
    """Platt scaling of the log-odds: the temperature T > 0 (and, with ``bias``, the shift b)
    minimising the negative log-likelihood of sigmoid(log-odds / T + b); b is 0 without ``bias``."""
    log_odds = _log_odds(logits)
    targets = torch.as_tensor(labels, dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T: T stays positive
    shift = torch.zeros(1, dtype=torch.float64, requires_grad=bias)
    optimiser = torch.optim.LBFGS([log_t, shift] if bias else [log_t], lr=0.1, max_iter=iterations,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(log_odds / log_t.exp() + shift, targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0)), float(shift.detach())


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bias: float = 0.0) -> float:
    targets = torch.as_tensor(labels, dtype=torch.float64)
    return float(torch.nn.functional.binary_cross_entropy_with_logits(_log_odds(logits) / temperature + bias, targets))


def threshold_for_sensitivity(labels: np.ndarray, probs: np.ndarray, target: float = 0.9) -> float:
    """The highest threshold whose sensitivity (``prob >= threshold`` counted positive) is at
    least ``target``: the most specific operating point that still meets the sensitivity."""
    positives = np.sort(probs[labels == 1])[::-1]
    if len(positives) == 0:
        return 0.5
    needed = int(np.ceil(target * len(positives)))
    return float(positives[max(needed, 1) - 1])


MIN_CASES_PER_CLASS = 10


def degenerate(sensitivity: float | None, specificity: float | None) -> bool:
    """Whether an operating point calls every case one class on the data it was chosen on."""
    return sensitivity is not None and specificity is not None and {sensitivity, specificity} == {0.0, 1.0}


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
    bias: float = 0.0  # added to the log-odds after the temperature (0 in checkpoints before it existed)
    threshold: float = 0.5
    target_sensitivity: float | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    val_ece_before: float | None = None
    val_ece_after: float | None = None
    val_benign: int | None = None  # the validation images the threshold was chosen on, per class
    val_malignant: int | None = None
    warning: str | None = None  # set when the operating point cannot be relied on (see the module's note)

    def to_dict(self) -> dict:
        return asdict(self)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated P(malignant) from (N, 2) logits (benign, malignant)."""
        return calibrated_malignant(logits, self.temperature, self.bias)

    def decide(self, probability: float) -> str:
        """The decision at the operating threshold: the one rule every caller uses."""
        return "malignant" if probability >= self.threshold else "benign"


def operating_point(labels: np.ndarray, probs: np.ndarray, target_sensitivity: float, temperature: float = 1.0,
                    bias: float = 0.0, cases: Sequence[str] | None = None) -> Calibration:
    """The threshold chosen on validation probabilities for the target sensitivity, with the
    sensitivity and specificity it gives there; refused (0.5 instead, and a warning) when too few
    cases of a class hold it or it calls every case one class. ``cases``: each image's case, so
    that a class is counted in cases (several views of one nodule are one case), else in images."""
    positives, negatives = labels == 1, labels == 0
    chosen = threshold_for_sensitivity(labels, probs, target_sensitivity)

    def rates(threshold: float) -> tuple[float | None, float | None]:
        predicted = probs >= threshold
        return (float(predicted[positives].mean()) if positives.any() else None,
                float((~predicted[negatives]).mean()) if negatives.any() else None)

    sensitivity, specificity = rates(chosen)
    benign, malignant = int(negatives.sum()), int(positives.sum())
    problem = None
    unit, counted = "images", (benign, malignant)
    if cases is not None:
        by_case = dict(zip(cases, labels.tolist(), strict=True))
        unit, counted = "cases", (sum(v == 0 for v in by_case.values()), sum(v == 1 for v in by_case.values()))
    if min(counted) < MIN_CASES_PER_CLASS:
        problem = (f"chosen on {counted[0]} benign and {counted[1]} malignant validation {unit} "
                   f"(fewer than {MIN_CASES_PER_CLASS} of a class)")
    elif degenerate(sensitivity, specificity):
        problem = (f"it calls every validation image one class (sensitivity {sensitivity:.2f}, specificity "
                   f"{specificity:.2f} on {benign} benign and {malignant} malignant)")
    warning = None
    if problem:
        threshold = 0.5
        sensitivity, specificity = rates(threshold)
        warning = (f"operating threshold {chosen:.2f} refused: {problem}; the decision uses 0.5 on the calibrated "
                   "probability instead and is not a validated operating point")
        if degenerate(sensitivity, specificity):
            warning += " (and 0.5 also calls every validation image one class: read the probability, not the decision)"
    else:
        threshold = chosen
    return Calibration(
        temperature=temperature, bias=bias, threshold=threshold, target_sensitivity=target_sensitivity,
        val_sensitivity=sensitivity, val_specificity=specificity, val_benign=benign, val_malignant=malignant,
        warning=warning,
    )


def calibrate(logits: np.ndarray, labels: np.ndarray, target_sensitivity: float = 0.9,
              cases: Sequence[str] | None = None) -> Calibration:
    """Fit the temperature, the bias and the operating threshold on validation logits (``cases``:
    each image's case, see :func:`operating_point`)."""
    temperature, bias = fit_platt(logits, labels, bias=True)
    probs = calibrated_malignant(logits, temperature, bias)
    return replace(
        operating_point(labels, probs, target_sensitivity, temperature, bias, cases),
        val_ece_before=expected_calibration_error(labels, calibrated_malignant(logits)),
        val_ece_after=expected_calibration_error(labels, probs),
    )
