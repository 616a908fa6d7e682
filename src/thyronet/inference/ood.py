"""Does an input look like the images the model learnt? A feature-space distance gate.

The classifier's pooled features of its training images are summarised by a principal subspace
(mean, the leading directions and their spreads) plus the spread of what lies outside it. An
input's score is its Mahalanobis distance in that subspace combined with its residual distance
(both in units of the training spread), divided by the threshold that 95% of the validation
images pass: a score above 1 means "this does not look like the thyroid ultrasound the model
learnt". Random noise, photographs and other organs fall far outside; the measured rates are in
docs/results.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PASS_RATE = 0.95  # share of in-distribution validation images that pass at the threshold


@dataclass
class FeatureGate:
    mean: list[float]
    components: list[list[float]]  # k x d, orthonormal rows
    scales: list[float]  # standard deviation along each component
    residual_scale: float  # RMS per dimension of what the components leave out
    threshold: float  # raw distance that PASS_RATE of validation images stay under
    pass_rate: float = PASS_RATE

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, components: int = 32, pass_rate: float = PASS_RATE) -> FeatureGate:
        """Fit the subspace on training features, the threshold on validation features."""
        train = np.asarray(train, np.float64)
        mean = train.mean(0)
        centred = train - mean
        k = max(1, min(components, len(train) - 1, train.shape[1]))
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        scales = np.maximum(singular[:k] / np.sqrt(max(1, len(train) - 1)), 1e-6)
        residual = centred - centred @ vt[:k].T @ vt[:k]
        residual_scale = float(max(np.sqrt((residual**2).mean()), 1e-6))
        gate = cls(mean.tolist(), vt[:k].tolist(), scales.tolist(), residual_scale, 1.0, pass_rate)
        gate.threshold = float(np.quantile(gate.distance(val), pass_rate))
        return gate

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Root of (Mahalanobis distance in the subspace)^2 + (residual / residual spread)^2 / d."""
        centred = np.asarray(features, np.float64) - np.asarray(self.mean)
        components = np.asarray(self.components)
        projected = centred @ components.T
        inside = ((projected / np.asarray(self.scales)) ** 2).sum(1)
        residual = centred - projected @ components
        outside = (residual**2).mean(1) / self.residual_scale**2
        return np.sqrt(inside + outside)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Distance in units of the threshold: above 1 is out of distribution."""
        return self.distance(features) / self.threshold

    def to_dict(self) -> dict:
        return asdict(self)
