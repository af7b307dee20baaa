"""Result types of the labeler: what other modules (training, evaluation, QA) read.

Plain dataclasses rather than pydantic models: the labeler builds 14 of these per report at more than
a thousand reports a second, and `to_dict()` gives the JSON form at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, NamedTuple

from libs.domain.labels import CHEXPERT_LABELS

Laterality = Literal["left", "right", "bilateral"]
Severity = Literal["mild", "moderate", "severe"]


class Status(str, Enum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNCERTAIN = "uncertain"
    NOT_MENTIONED = "not_mentioned"

    def __str__(self) -> str:  # "positive", not "Status.POSITIVE", in f-strings and tables
        return self.value


class Span(NamedTuple):
    """Character offsets into the labelled text (end exclusive) and the text there: text == source[start:end]."""

    start: int
    end: int
    text: str


@dataclass(slots=True)
class ObservationLabel:
    status: Status = Status.NOT_MENTIONED
    # The mentions that decided the status (for a positive observation, its positive mentions, and so on).
    spans: list[Span] = field(default_factory=list)
    laterality: Laterality | None = None
    severity: Severity | None = None
    # The negation / uncertainty cues that gave those mentions their status, for explanations.
    cues: list[Span] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "spans": [[s.start, s.end, s.text] for s in self.spans],
            "laterality": self.laterality,
            "severity": self.severity,
            "cues": [[s.start, s.end, s.text] for s in self.cues],
        }


@dataclass(slots=True)
class LabelerResult:
    text: str
    observations: dict[str, ObservationLabel]  # the 14 names, in CHEXPERT_LABELS order

    def status(self, observation: str) -> Status:
        return self.observations[observation].status

    def positive_labels(self) -> set[str]:
        return {name for name, obs in self.observations.items() if obs.status is Status.POSITIVE}

    def labels_with(self, *statuses: Status) -> set[str]:
        return {name for name, obs in self.observations.items() if obs.status in statuses}

    def vector(self, uncertain: float = 0.0, negative: float = 0.0, missing: float = 0.0) -> list[float]:
        """Training targets in CHEXPERT_LABELS order: positive 1.0, the others as chosen (e.g. U-zeros/U-ones)."""
        value = {Status.POSITIVE: 1.0, Status.UNCERTAIN: uncertain, Status.NEGATIVE: negative,
                 Status.NOT_MENTIONED: missing}
        return [value[self.observations[name].status] for name in CHEXPERT_LABELS]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "observations": {name: obs.to_dict() for name, obs in self.observations.items()},
            "positive": [name for name in CHEXPERT_LABELS if self.observations[name].status is Status.POSITIVE],
            "uncertain": [name for name in CHEXPERT_LABELS if self.observations[name].status is Status.UNCERTAIN],
        }
