"""Data layer: reading DDTI and other sources, splitting by case, preprocessing, augmentation."""

from .records import BENIGN, LABEL_NAMES, MALIGNANT, Collection, ImageRecord
from .sources import open_inputs, open_source
from .splits import Split, SplitPlan, holdout_plan, kfold_plan

__all__ = [
    "BENIGN", "MALIGNANT", "LABEL_NAMES", "Collection", "ImageRecord", "open_source", "open_inputs",
    "Split", "SplitPlan", "holdout_plan", "kfold_plan",
]
