"""Clinical context sent by the EHR with a report request."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClinicalContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    age: int | None = Field(default=None, ge=0, le=130, description="Age in years")
    sex: Literal["M", "F", "O", "U"] | None = Field(default=None, description="M, F, O(ther) or U(nknown)")
    indication: str | None = Field(default=None, max_length=2000)
    prior_studies: list[dt.date] = Field(default_factory=list, description="Dates of prior studies")

    def as_prompt(self) -> str:
        """Short plain-text form the language model is conditioned on (no identifiers in it)."""
        parts = []
        if self.age is not None:
            parts.append(f"age {self.age}")
        if self.sex:
            parts.append({"M": "male", "F": "female", "O": "other sex", "U": "unknown sex"}[self.sex])
        if self.indication:
            parts.append(f"indication: {self.indication.strip()}")
        if self.prior_studies:
            parts.append(f"{len(self.prior_studies)} prior studies, latest {max(self.prior_studies).isoformat()}")
        return "; ".join(parts)
