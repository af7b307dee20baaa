"""Plain records the loaders return and the training code consumes (no torch here).

Labels are 14-vectors in CHEXPERT_LABELS order with values 1.0 (positive), 0.0 (negative) or NaN
(unknown / not supervised): a NaN is masked out of the detection loss, never read as negative.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from libs.domain.labels import CHEXPERT_LABELS

N_LABELS = len(CHEXPERT_LABELS)
NAN = float("nan")


def empty_labels() -> list[float]:
    return [NAN] * N_LABELS


def labels_from_dict(values: dict[str, float | None]) -> list[float]:
    """14-vector from {label: 1/0/None}; unknown label names raise ValueError."""
    out = empty_labels()
    for name, value in values.items():
        if name not in CHEXPERT_LABELS:
            raise ValueError(f"unknown CheXpert observation {name!r}")
        out[CHEXPERT_LABELS.index(name)] = NAN if value is None else float(value)
    return out


def known(value: float) -> bool:
    return not math.isnan(value)


@dataclass
class Context:
    """Clinical context as the platform receives it (libs.domain.context.ClinicalContext fields)."""

    age: int | None = None
    sex: str | None = None  # "M" / "F" / None
    indication: str | None = None
    has_prior: bool = False


@dataclass
class ReportRecord:
    """One report: the target text and what the prompt may carry."""

    report_id: str
    findings: str
    impression: str
    context: Context = field(default_factory=Context)
    # Reference statuses from the labeler: label -> "positive" | "uncertain" | "negative" | "not_mentioned"
    statuses: dict[str, str] = field(default_factory=dict)
    split: str = "train"

    @property
    def text(self) -> str:
        """Findings then impression, one space apart, as prose (clean_report_text): the generation target."""
        return clean_report_text(" ".join(part.strip() for part in (self.findings, self.impression)
                                          if part and part.strip()))


# IU impressions are numbered lists ("1. No acute process. 2. ..."): in a generation target the numbers
# become words the decoder writes inside prose. Dictation leaves doubled full stops ("age.. 1.") and
# stops without a space ("apex.There").
_LIST_NUMBER = re.compile(r"(?:(?<=^)|(?<=[.:;]\s)|(?<=[.:;]))\s*\(?\d{1,2}[.)](?=\s|$)\s*")
_REPEATED_STOP = re.compile(r"\s*\.(?:\s*\.)+")
_NO_SPACE_AFTER_STOP = re.compile(r"(?<=[a-z]{2})\.(?=[A-Z][a-z])")


def clean_report_text(text: str) -> str:
    """Report text as prose: list numbers dropped, doubled full stops collapsed, a space after every
    sentence's full stop, single spaces. Numbers inside sentences ("1.5 cm", "T11") are untouched."""
    text = _NO_SPACE_AFTER_STOP.sub(". ", text)
    text = _REPEATED_STOP.sub(".", text)
    text = _LIST_NUMBER.sub(" ", text)
    text = _REPEATED_STOP.sub(".", text)
    text = re.sub(r"\s+", " ", text).strip()
    return "" if text == "." else text


@dataclass
class ImageRecord:
    """One image file with its detection labels (NaN = unknown)."""

    path: str
    labels: list[float]
    group: str  # patient / subject id: splits never separate a group
    split: str = "train"
    view: str | None = None


@dataclass
class PairedRecord:
    """An image with its report (MIMIC-CXR, IU X-ray): trains the image-token path end to end."""

    image: ImageRecord
    report: ReportRecord

    @property
    def split(self) -> str:
        return self.image.split
