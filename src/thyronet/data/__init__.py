"""Data layer: reading DDTI and other sources, splitting by case, preprocessing, augmentation.

The names below are loaded on first use (PEP 562), so that importing one light module of the
package, as the command line's help does, does not import the image and array libraries."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BENIGN": "records",
    "LABEL_NAMES": "records",
    "MALIGNANT": "records",
    "Collection": "records",
    "ImageRecord": "records",
    "Split": "splits",
    "SplitPlan": "splits",
    "holdout_plan": "splits",
    "kfold_plan": "splits",
    "open_inputs": "sources",
    "open_source": "sources",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
