"""The model family: ThyroNet-X4 Genesis, its ablations and the paper's comparison networks."""

from thyronet.models import zoo  # noqa: F401  (registers the models)
from thyronet.models.registry import cam_target_layer, create_model, get_entry, list_models, register_model

__all__ = ["cam_target_layer", "create_model", "get_entry", "list_models", "register_model"]
