"""thyronet: computer-aided diagnosis of thyroid nodules on ultrasound.

An aid for physicians and researchers, not a diagnosis. Implements the ThyroNet-X4 Genesis
model (Wang, Niu et al., Sci. Rep. 2025) with honest, case-grouped evaluation.
"""

__version__ = "0.1.0"
