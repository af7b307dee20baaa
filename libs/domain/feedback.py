"""A radiologist's feedback on a drafted report: the verdict, the text as signed, and per-finding
corrections of the detection head's calls. Validated here; checked against the report it is for in
libs/feedback/record.py."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.domain.labels import CHEXPERT_LABELS

Decision = Literal["accepted", "edited", "rejected"]
MAX_TEXT = 20_000
MAX_REASON = 2_000


class FindingCorrection(BaseModel):
    """The radiologist's call on one observation where it differs from, or confirms, the head's."""

    model_config = ConfigDict(extra="forbid")

    observation: str = Field(description="A CheXpert observation the report assessed, e.g. Pleural Effusion")
    present: bool = Field(description="The radiologist's call")
    laterality: Literal["left", "right", "bilateral"] | None = Field(default=None, description="Only when present")
    severity: Literal["mild", "moderate", "severe"] | None = Field(default=None, description="Only when present")

    @model_validator(mode="after")
    def _only_for_present(self) -> "FindingCorrection":
        if self.observation not in CHEXPERT_LABELS or self.observation == "No Finding":
            raise ValueError(f"unknown observation {self.observation!r}")
        if not self.present and (self.laterality or self.severity):
            raise ValueError(f"{self.observation}: laterality and severity apply only to a present finding")
        return self


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(description="accepted: signed as drafted; edited: signed with changes (final_text); "
                                           "rejected: not usable (reason)")
    final_text: str | None = Field(default=None, max_length=MAX_TEXT,
                                   description="Findings and impression as signed (edited only)")
    reason: str | None = Field(default=None, max_length=MAX_REASON, description="Why it was rejected (rejected only)")
    corrections: list[FindingCorrection] = Field(default_factory=list, max_length=len(CHEXPERT_LABELS))
    rating: int | None = Field(default=None, ge=1, le=5,
                               description="Optional: the draft's usefulness, 1 (useless) to 5 (signed as it was)")

    @model_validator(mode="after")
    def _consistent(self) -> "FeedbackIn":
        if (self.decision == "edited") != bool(self.final_text and self.final_text.strip()):
            raise ValueError("final_text is required with decision 'edited', and only then")
        if (self.decision == "rejected") != bool(self.reason and self.reason.strip()):
            raise ValueError("reason is required with decision 'rejected', and only then")
        seen = [c.observation for c in self.corrections]
        if len(seen) != len(set(seen)):
            raise ValueError("each observation may be corrected once")
        return self


class FeedbackOut(FeedbackIn):
    report_id: str
    version: int = Field(description="1 for the first feedback on this report, then 2, 3 ... (the latest counts)")
    edit_distance: int | None = Field(description="Levenshtein distance from the draft's findings + impression to "
                                                  "final_text (edited only)")
    reviewer: str = Field(description="Who gave it: the token subject or API key id")
    reviewer_name: str | None = Field(default=None, description="The reviewer's display name, as the signed report names them")
    created_at: dt.datetime


def signed_sections(final_text: str) -> tuple[str, str]:
    """(findings, impression) of a signed text: the findings, a blank line, then the impression (the
    workstation writes it so; a text without a blank line is all findings)."""
    text = final_text.strip().replace("\r\n", "\n")
    findings, _, impression = text.partition("\n\n")
    return findings.strip(), impression.strip()
