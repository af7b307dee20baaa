"""Constructed model outputs for report and QA tests."""

from __future__ import annotations

from libs.domain.labels import CHEXPERT_LABELS
from libs.domain.model_output import LabelPrediction, ModelOutput


def model_output(
    probs: dict[str, float] | None = None,
    *,
    not_assessed: set[str] = frozenset(),
    boxes: dict[str, list[int]] | None = None,
    text: str | None = None,
    threshold: float = 0.5,
    name: str = "test-model",
    version: str = "1.0.0",
    text_sees_image: bool = False,
) -> ModelOutput:
    """Every label assessed at 0.05 unless given; `not_assessed` labels have no probability."""
    probs, boxes = probs or {}, boxes or {}
    return ModelOutput(
        model_name=name,
        model_version=version,
        text=text,
        text_sees_image=text_sees_image,
        predictions=[
            LabelPrediction(
                label=label,
                probability=None if label in not_assessed else probs.get(label, 0.05),
                threshold=None if label in not_assessed else threshold,
                bounding_box=boxes.get(label),
            )
            for label in CHEXPERT_LABELS
        ],
    )
