"""Report templates: YAML files in libs/reporting/templates/, one per hospital template.

A template decides how Findings, Impression and Recommendations are written and how the whole
plain-text document (what FHIR's presentedForm carries) is laid out. The renderer fills it from the
model output; see docs/fhir.md ("Report templates") for every field and placeholder.

Adding a template = adding a file `<name>.yaml` (name: lower-case letters, digits, `-` and `_`).
A template is checked when it is loaded: unknown fields, unknown placeholders, a findings layout that
leaves an observation out, and a not-assessed line QA could not recognise are all errors.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from libs.domain.labels import ABNORMAL_LABELS

TEMPLATES_DIR = Path(__file__).parent / "templates"
_NAME = re.compile(r"^[a-z0-9_\-]{1,40}$")

# QA ignores lines starting with this (case-insensitive) when it re-reads a report: they list what the
# model did not look at, which is neither a positive nor a negative statement. Every template's
# not-assessed wording must start with it.
NOT_ASSESSED_PREFIX = "Not assessed"

PRELIMINARY_NOTICE = (
    "AI-generated preliminary draft: it must be reviewed, edited as needed and signed by a radiologist."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Strict):
    heading: str = Field(min_length=1)
    labels: list[str] = Field(min_length=1)


class FindingsSpec(_Strict):
    # sentences: one sentence per assessed observation (negatives too), in CheXpert order.
    # positives: positive findings only, most confident first; `none_positive` when there is none.
    # regions: one line per anatomical region, each listing its observations' sentences.
    layout: Literal["sentences", "positives", "regions"]
    positive: str = "{finding}{confidence}{location}."
    negative: str = "{negative}"
    none_positive: str = "No abnormality among the observations this model assesses."
    not_assessed: str = NOT_ASSESSED_PREFIX + " by this model: {labels}."
    separator: str = " "
    line_separator: str = "\n"
    region_line: str = "{heading}: {sentences}"
    regions: list[Region] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "FindingsSpec":
        if not self.not_assessed.startswith(NOT_ASSESSED_PREFIX):
            raise ValueError(f"findings.not_assessed must start with {NOT_ASSESSED_PREFIX!r} (QA skips such lines)")
        if self.layout == "regions":
            listed = [label for region in self.regions for label in region.labels]
            unknown = sorted(set(listed) - set(ABNORMAL_LABELS))
            missing = sorted(set(ABNORMAL_LABELS) - set(listed))
            twice = sorted({label for label in listed if listed.count(label) > 1})
            if unknown or missing or twice:
                raise ValueError(f"findings.regions must list each observation once: unknown {unknown}, "
                                 f"missing {missing}, repeated {twice}")
        elif self.regions:
            raise ValueError("findings.regions only applies to layout: regions")
        return self


class ImpressionSpec(_Strict):
    positive: str = "{finding}"
    join: str = "; "
    suffix: str = "."
    normal: str = "No acute cardiopulmonary abnormality among the observations this model assesses."


class RecommendationsSpec(_Strict):
    critical: str = "Suspected critical finding ({findings}): immediate radiologist review."
    positive: str = "Clinical correlation recommended."
    normal: str = ""
    notice: str = PRELIMINARY_NOTICE


class ReportTemplate(_Strict):
    name: str
    title: str
    description: str
    show_confidence: bool
    confidence: str = " (confidence {confidence:.2f})"
    show_location: bool = False
    location: str = " (image region x {x0}-{x1}, y {y0}-{y1})"
    findings: FindingsSpec
    impression: ImpressionSpec = Field(default_factory=ImpressionSpec)
    recommendations: RecommendationsSpec = Field(default_factory=RecommendationsSpec)
    document: str

    @model_validator(mode="after")
    def _placeholders(self) -> "ReportTemplate":
        samples: dict[str, dict[str, Any]] = {
            "confidence": {"confidence": 0.5},
            "location": {"x0": 1, "y0": 2, "x1": 3, "y1": 4},
            "findings.positive": {"finding": "F", "label": "L", "confidence": "", "location": ""},
            "findings.negative": {"negative": "N", "label": "L"},
            "findings.none_positive": {},
            "findings.not_assessed": {"labels": "a, b", "count": 2},
            "findings.region_line": {"heading": "H", "sentences": "S"},
            "impression.positive": {"finding": "F", "label": "L", "confidence": ""},
            "impression.normal": {},
            "recommendations.critical": {"findings": "f"},
            "recommendations.positive": {"findings": "f"},
            "recommendations.normal": {},
            "recommendations.notice": {},
            "document": {"title": "T", "examination": "E", "findings": "F", "impression": "I",
                         "recommendations": "R", "review": "V", "model_version": "M"},
        }
        for path, values in samples.items():
            fmt = self._get(path)
            try:
                _check_format(fmt, values)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}: bad placeholder in {fmt!r} ({exc!r}); "
                                 f"available: {', '.join(sorted(values)) or 'none'}") from None
        return self

    def _get(self, path: str) -> str:
        obj: Any = self
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj


def _check_format(fmt: str, values: dict[str, Any]) -> None:
    for _, field_name, _, _ in string.Formatter().parse(fmt):
        if field_name is None:
            continue
        if not field_name or not field_name.isidentifier():
            raise ValueError(f"placeholder {{{field_name}}} must be a plain name")
    fmt.format(**values)


class TemplateError(Exception):
    """A template file that does not exist or does not validate."""


def available_templates() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml") if _NAME.match(p.stem)))


@functools.lru_cache(maxsize=32)
def load_template(name: str) -> ReportTemplate:
    if not _NAME.match(name) or name not in available_templates():
        raise TemplateError(f"unknown report template {name!r}")
    path = TEMPLATES_DIR / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        template = ReportTemplate.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise TemplateError(f"report template {path.name} is invalid: {exc}") from exc
    if template.name != name:
        raise TemplateError(f"report template {path.name} says name: {template.name!r}")
    return template
