"""Data layer: reading DDTI and other sources, splitting by case, preprocessing, augmentation."""

from .records import BENIGN, LABEL_NAMES, MALIGNANT, Collection, ImageRecord
from .sources import open_inputs, open_source
from .splits import Split, SplitPlan, holdout_plan, kfold_plan

__all__ = [
    "BENIGN",
    "LABEL_NAMES",
    "MALIGNANT",
    "Collection",
    "ImageRecord",
    "Split",
    "SplitPlan",
    "holdout_plan",
    "kfold_plan",
    "open_inputs",
    "open_source",
]
