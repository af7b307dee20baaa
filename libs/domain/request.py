"""The EHR's report request (the design's request body)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.domain.context import ClinicalContext
from libs.domain.study import View


class ImageRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series_uid: str = Field(min_length=1, max_length=64)
    instance_uid: str = Field(min_length=1, max_length=64)
    view: View | None = None


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_id: str | None = Field(default=None, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$",
                                 description="Must match the path when given (a DICOM UID)")
    images: list[ImageRef] = Field(default_factory=list, description="Empty: use every stored instance")
    clinical_context: ClinicalContext = Field(default_factory=ClinicalContext)
    report_template: str = Field(default="standard", pattern=r"^[a-z0-9_\-]{1,40}$")
    confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    priority: Literal["stat", "routine"] = "routine"
