"""The shape of the service's prediction answer, for ``/openapi.json`` and for validating what is
sent. The descriptor and ACR TI-RADS parts are built from the vocabulary and ACR's categories when
the application is made, so a descriptor head or category added there appears here, named, with
no other change."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from thyronet.data.tirads import CATEGORIES
from thyronet.data.vocabulary import DESCRIPTOR_CLASSES


class DescriptorAnswer(BaseModel):
    value: str = Field(description="the most likely value, or 'not assessed by the model'")
    probability: float | None = Field(description="the value's probability; none when not assessed")
    assessed: bool = Field(description="false for a head no better than the commonest value on held-out images")


class NoduleSize(BaseModel):
    long_axis: float
    short_axis: float = Field(description="the longest extent perpendicular to the long axis")
    area: float
    unit: str = Field(description="mm where the image is calibrated, else px")
    taller_than_wide: bool
    height_to_width: float = Field(description="depth over width: above 1 is ACR's taller-than-wide (3 points)")


class Recommendation(BaseModel):
    action: str = Field(description="FNA, follow-up, no FNA or follow-up, size needed, or incomplete")
    reason: str
    follow_up_years: list[int]
    note: str


class ModelInfo(BaseModel):
    name: str
    runtime: str
    thyronet_version: str
    data_fingerprint: str | None


def _descriptors_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (DescriptorAnswer | None, Field(None, description=f"one of {list(DESCRIPTOR_CLASSES[name])}"))
        for name in DESCRIPTOR_CLASSES}
    return create_model("Descriptors", **fields)


def _acr_model() -> type[BaseModel]:
    categories: dict[str, Any] = {
        name.replace(" ", "_"): (list[str] | None, Field(None, alias=name, description=f"any of {list(c.points)}"
                                                         if c.multiple else f"one of {list(c.points)}"))
        for name, c in CATEGORIES.items()}
    values = create_model("AcrCategories", __config__=ConfigDict(populate_by_name=True), **categories)
    return create_model("AcrTirads", categories=(values, ...), points=(int | None, ...), level=(str | None, ...),
                        missing=(list[str], Field(description="categories not assessed: no level without them")),
                        note=(str, ...))


def prediction_model() -> type[BaseModel]:
    """The prediction answer's model, made from today's vocabulary and categories."""
    return create_model(
        "PredictionAnswer",
        probability_malignant=(float, Field(description="calibrated probability of malignancy")),
        decision=(str, Field(description="benign or malignant at the operating threshold")),
        threshold=(float, ...), target_sensitivity=(float | None, ...),
        validation_sensitivity=(float | None, ...), validation_specificity=(float | None, ...),
        model=(ModelInfo, ...), ood_score=(float | None, ...), warning=(str | None, ...),
        region=(str, Field(description="where the model looked: scan area, predicted, box")),
        nodule_box=(list[int] | None, ...),
        descriptors=(_descriptors_model() | None, ...), description=(str | None, ...),
        nodule_size=(NoduleSize | None, Field(description="the predicted outline's calipers")),
        acr_tirads=(_acr_model() | None, Field(description="the ACR TI-RADS proposal: the model's descriptors in ACR's "
                                                           "words and the outline's shape")),
        tirads_points=(int | None, ...), tirads_level=(str | None, ...),
        acr_recommendation=(Recommendation | None, ...),
        input_png=(str, Field(description="the frame with the region seen and the outline, base64 PNG")),
        overlay_png=(str | None, Field(description="the same with Grad-CAM, base64 PNG")),
        notice=(str, ...),
    )
