"""What the model bundle returns for one study, before any wording or QA."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from libs.domain.labels import CHEXPERT_LABELS


class LabelPrediction(BaseModel):
    label: str
    # None when the bundle's detection head was not trained to assess this observation:
    # "not assessed" is never the same as negative.
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # [x0, y0, x1, y1] as pixel edges (x1, y1 exclusive): in model-input pixels as the bundle runner
    # returns them, in source-image pixels once the pipeline has mapped them back (what reports carry).
    bounding_box: list[int] | None = None

    @property
    def assessed(self) -> bool:
        return self.probability is not None

    @property
    def positive(self) -> bool:
        return self.probability is not None and self.threshold is not None and self.probability >= self.threshold


class ModelOutput(BaseModel):
    model_name: str
    model_version: str
    predictions: list[LabelPrediction]
    text: str | None = Field(default=None, description="Generated report text, when the bundle has a decoder")
    inference_ms: float | None = None
    # True when the text decoder was given the image (manifest generation.image_tokens); a text written
    # from the findings list and context alone has no evidence for anything the head did not measure.
    text_sees_image: bool = False

    @model_validator(mode="after")
    def _all_14_in_order(self) -> "ModelOutput":
        names = tuple(p.label for p in self.predictions)
        if names != CHEXPERT_LABELS:
            raise ValueError("predictions must list the 14 CheXpert observations in order")
        return self

    def prediction(self, label: str) -> LabelPrediction:
        return self.predictions[CHEXPERT_LABELS.index(label)]

    def positives(self) -> list[LabelPrediction]:
        return [p for p in self.predictions if p.positive and p.label != "No Finding"]
