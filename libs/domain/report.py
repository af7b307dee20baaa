"""The report returned to the EHR: the design's response schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Severity = Literal["mild", "moderate", "severe"]


class Finding(BaseModel):
    finding: str
    label: str = Field(description="The CheXpert observation this finding reports")
    confidence: float = Field(ge=0.0, le=1.0)
    severity: Severity | None = None
    laterality: Literal["left", "right", "bilateral"] | None = None
    bounding_box: list[int] | None = Field(default=None, description="[x0, y0, x1, y1] in source image pixels")
    is_critical: bool = False


class AssessedObservation(BaseModel):
    """The head's output for one observation the bundle assesses, positive or not: what outside monitoring
    (AUROC, calibration) needs, and what a reader needs to see how close a negative came."""

    label: str = Field(description="The CheXpert observation")
    probability: float = Field(ge=0.0, le=1.0, description="Calibrated probability from the detection head")
    threshold: float = Field(ge=0.0, le=1.0, description="The bundle's operating threshold for this observation")
    present: bool = Field(description="The head's call: probability >= threshold, judged before rounding "
                                      "(then it is also in `findings`)")
    is_critical: bool = Field(default=False, description="One of the critical observations (libs.domain.labels)")
    bounding_box: list[int] | None = Field(
        default=None, description="[x0, y0, x1, y1] in source image pixels; only for present observations with a "
                                  "focal activation")


class QaSummary(BaseModel):
    """What QA found comparing the report text with the detection head; kept per study for monitoring."""

    critical: list[str] = Field(default_factory=list, description="Critical observations either side reports")
    hallucinations: list[str] = Field(
        default_factory=list, description="In the text, not seen by the detection head (assessed observations)"
    )
    omissions: list[str] = Field(default_factory=list, description="Seen by the detection head, missing from the text")
    laterality_conflicts: list[str] = Field(
        default_factory=list, description="Side in the text contradicts the side of the head's box"
    )
    low_confidence: list[str] = Field(default_factory=list, description="Findings below the request's threshold")
    unsupported: list[str] = Field(
        default_factory=list,
        description="Observations the text rules out (critical ones) or reports although the model does not assess them",
    )
    critical_not_assessed: list[str] = Field(
        default_factory=list,
        description="Critical observations this model cannot assess: the draft cannot rule them out, a radiologist must",
    )
    borderline: list[str] = Field(
        default_factory=list,
        description="Observations the head calls negative whose probability still reaches the request's "
                    "confidence_threshold: negatives the model was not sure of",
    )
    hallucination_count: int = 0
    omission_count: int = 0


class TextGrounding(BaseModel):
    """How much of the model's generated text the report kept (libs.reporting.grounding)."""

    kept_sentences: int = 0
    dropped_sentences: int = 0
    dropped_by_reason: dict[str, int] = Field(
        default_factory=dict,
        description="Sentences dropped per reason: unassessed, global_normal, outside, contradicts_head, location, "
                    "interval, age (a sentence counts once for each reason it has)")
    added_from_head: list[str] = Field(
        default_factory=list, description="Head-positive findings the kept text did not state, added in template wording")


class Report(BaseModel):
    report_id: str
    study_id: str
    findings: list[Finding]
    findings_text: str
    impression: str
    recommendations: str
    observations: list[AssessedObservation] = Field(
        default_factory=list,
        description="Every observation the bundle assesses, positive or not, in CheXpert order (No Finding excluded)")
    not_assessed: list[str] = Field(
        default_factory=list, description="Observations the installed model does not assess"
    )
    processing_time_ms: int | None = None
    model_version: str
    requires_radiologist_review: bool = True
    review_reasons: list[str] = Field(default_factory=list)
    # The draft is never final: only a radiologist signs a report.
    report_status: Literal["preliminary"] = "preliminary"
    template: str | None = Field(default=None, description="The report template the text was written with")
    qa: QaSummary | None = Field(default=None, description="QA's comparison of text and detection head")
    text_grounding: TextGrounding | None = Field(
        default=None, description="What was kept of the model's generated text (None: the bundle writes no text)")
