"""Response bodies of the REST API (the design's response schema plus job status fields)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from libs.domain.job import JobState


class Links(BaseModel):
    report: str = Field(description="GET here for the report (long-poll with ?wait=SECONDS)")
    job: str = Field(description="GET here for the job's state and history")


class JobAccepted(BaseModel):
    job_id: str
    study_id: str
    status: JobState = Field(description="The job's state now (received for a new job)")
    links: Links


class FindingOut(BaseModel):
    finding: str
    confidence: float
    severity: Literal["mild", "moderate", "severe"] | None = None
    bounding_box: list[int] | None = Field(default=None, description="[x0, y0, x1, y1] in source image pixels")
    is_critical: bool = False
    label: str | None = Field(default=None, description="The CheXpert observation this finding reports")
    laterality: Literal["left", "right", "bilateral"] | None = None


class ObservationOut(BaseModel):
    """The detection head's output for one assessed observation, positive or not."""

    label: str = Field(description="The CheXpert observation")
    probability: float = Field(description="Calibrated probability from the detection head")
    threshold: float = Field(description="The model's operating threshold for it")
    present: bool = Field(description="probability >= threshold (then it is also a finding)")
    is_critical: bool = False
    bounding_box: list[int] | None = Field(default=None, description="[x0, y0, x1, y1] in source image pixels "
                                                                     "(present observations with a focal box)")


class ReportOut(BaseModel):
    """The latest job's outcome for a study.

    `status` is the job's state. When it is `reviewed` the design's report fields are present;
    while the job runs only the status fields are (and the HTTP status is 202); when it `failed`,
    `error` says why.
    """

    status: JobState
    job_id: str
    study_id: str
    report_id: str | None = None
    findings: list[FindingOut] | None = None
    findings_text: str | None = None
    impression: str | None = None
    recommendations: str | None = None
    observations: list[ObservationOut] | None = Field(
        default=None, description="Every observation the model assesses, with probability and threshold, "
                                  "positive or not")
    not_assessed: list[str] | None = Field(default=None, description="Observations the model does not assess")
    processing_time_ms: int | None = None
    model_version: str | None = None
    requires_radiologist_review: bool | None = None
    review_reasons: list[str] | None = None
    report_status: Literal["preliminary"] | None = Field(
        default=None, description="Always preliminary: a radiologist finalises the report"
    )
    error: str | None = Field(default=None, description="Why the job failed")
    links: Links


class JobOut(BaseModel):
    job_id: str
    study_id: str
    status: JobState
    priority: str
    error: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    history: dict[str, dt.datetime] = Field(description="state → when the job entered it")
    pacs_results: dict[str, Any] | None = Field(
        default=None,
        description="Report SR stored back to the PACS (docs/pacs.md): `state` (pending, stored, partial, "
                    "failed), the SR's UIDs and each server's outcome; absent when no PACS takes results",
    )
    links: Links


class HealthOut(BaseModel):
    status: Literal["ok"]


class InferenceWorkerOut(BaseModel):
    worker: str
    model_name: str
    model_version: str
    providers: list[str] = Field(description="onnxruntime execution providers in the order they are tried")
    batching: bool
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    num_beams: int | None = Field(default=None, description="Report decoding: 1 = greedy, k > 1 = beam search; null: no decoder")


class ReadyOut(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="check → 'ok' or the reason it failed")
    inference: list[InferenceWorkerOut] = Field(
        default_factory=list,
        description="Inference workers seen in the last 30 s, with their bundle and execution providers")
    automation: dict[str, str | None] = Field(
        default_factory=dict,
        description="The automation switch: mode (automatic or co-sign), reason and since; informational "
                    "(co-sign mode is a way of working, not a fault)")
    workers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Live step workers by step (heartbeats of the last 30 s; Celery backend only). With "
                    "CXR_READY_REQUIRES_WORKERS (default) the check `workers` fails while a step has none")


def links_for(study_id: str, job_id: str) -> Links:
    return Links(report=f"/api/v1/studies/{study_id}/report", job=f"/api/v1/jobs/{job_id}")
