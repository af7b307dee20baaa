"""How well the QA flag catches studies a radiologist must see: measured on (reference report, model
output) pairs, e.g. the evaluation split with the reference model's outputs.

For each pair the report is drafted exactly as the pipeline does (render_report with the template),
QA reviews it (review_report), and the radiologist's reference report is read with the labeler.
A study "has a critical finding" when the reference states one of CRITICAL_LABELS as present
(`count_uncertain=True` also counts hedged mentions). Reported:

- sensitivity: flagged studies / studies with a critical finding in the reference (95 % Wilson
  interval), overall and per critical label; `flagged_for_label` counts only flags whose reasons name
  that label (a stricter reading: flagged *for the right reason*);
- flagged fraction: flagged studies / all studies (the radiologists' review load);
- the indices of critical studies QA did not flag, for error analysis.

    python -m libs.qa.evaluation pairs.jsonl [--template standard] [--threshold 0.5] [--uncertain]

Each line of pairs.jsonl: {"reference": "<report text>", "model_output": {ModelOutput JSON},
"image": {"width": 2048, "view": "PA"} (optional)}. Prints the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from libs.domain.labels import CRITICAL_LABELS
from libs.domain.model_output import ModelOutput
from libs.domain.request import ReportRequest
from libs.domain.study import View
from libs.qa.laterality import ImageInfo
from libs.qa.review import read_text, review_report


@dataclass(frozen=True)
class EvalCase:
    reference: str
    output: ModelOutput
    image: ImageInfo | None = None


@dataclass
class LabelStats:
    studies: int = 0  # reference states this critical finding
    flagged: int = 0  # ... and QA flagged the study (any reason)
    flagged_for_label: int = 0  # ... and a reason names this label
    sensitivity: float | None = None
    sensitivity_ci95: tuple[float, float] | None = None


@dataclass
class QaFlagStats:
    studies: int
    flagged: int
    flagged_fraction: float | None
    flagged_fraction_ci95: tuple[float, float] | None
    critical_studies: int
    critical_flagged: int
    sensitivity: float | None
    sensitivity_ci95: tuple[float, float] | None
    per_label: dict[str, LabelStats] = field(default_factory=dict)
    missed: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95 % Wilson score interval of k successes out of n; None when n is 0."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def reference_critical(text: str, count_uncertain: bool = False) -> set[str]:
    statuses = ("positive", "uncertain") if count_uncertain else ("positive",)
    reading = read_text(text)
    return {label for label in CRITICAL_LABELS if reading.observations[label].status.value in statuses}


def evaluate_qa_flags(
    cases: Iterable[EvalCase],
    *,
    template: str = "standard",
    confidence_threshold: float = 0.5,
    count_uncertain: bool = False,
) -> QaFlagStats:
    from libs.reporting.render import render_report

    request = ReportRequest(report_template=template, confidence_threshold=confidence_threshold)
    per_label = {label: LabelStats() for label in sorted(CRITICAL_LABELS)}
    studies = flagged = critical_studies = critical_flagged = 0
    missed: list[int] = []
    for index, case in enumerate(cases):
        report = render_report(f"eval-{index}", "eval", case.output, request, image=case.image)
        verdict = review_report(report, case.output, request, image=case.image)
        critical = reference_critical(case.reference, count_uncertain)
        studies += 1
        flagged += verdict.requires_review
        if critical:
            critical_studies += 1
            critical_flagged += verdict.requires_review
            if not verdict.requires_review:
                missed.append(index)
        for label in critical:
            stats = per_label[label]
            stats.studies += 1
            stats.flagged += verdict.requires_review
            stats.flagged_for_label += any(label in reason for reason in verdict.reasons)
    for stats in per_label.values():
        if stats.studies:
            stats.sensitivity = stats.flagged / stats.studies
            stats.sensitivity_ci95 = wilson(stats.flagged, stats.studies)
    return QaFlagStats(
        studies=studies,
        flagged=flagged,
        flagged_fraction=flagged / studies if studies else None,
        flagged_fraction_ci95=wilson(flagged, studies),
        critical_studies=critical_studies,
        critical_flagged=critical_flagged,
        sensitivity=critical_flagged / critical_studies if critical_studies else None,
        sensitivity_ci95=wilson(critical_flagged, critical_studies),
        per_label=per_label,
        missed=missed,
    )


def read_cases(path: Path) -> list[EvalCase]:
    cases = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image = row.get("image")
                cases.append(EvalCase(
                    reference=str(row["reference"]),
                    output=ModelOutput.model_validate(row["model_output"]),
                    image=ImageInfo(width=int(image["width"]), view=View(image.get("view", "UNKNOWN")))
                    if image else None,
                ))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: not a (reference, model_output) pair: {exc}") from None
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.qa.evaluation",
                                     description="QA-flag sensitivity for critical findings, and flagged fraction")
    parser.add_argument("pairs", type=Path, help="JSON lines: reference, model_output[, image]")
    parser.add_argument("--template", default="standard")
    parser.add_argument("--threshold", type=float, default=0.5, help="the request's confidence_threshold")
    parser.add_argument("--uncertain", action="store_true", help="hedged reference mentions count as critical")
    args = parser.parse_args(argv)
    try:
        stats = evaluate_qa_flags(read_cases(args.pairs), template=args.template,
                                  confidence_threshold=args.threshold, count_uncertain=args.uncertain)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json.dump(stats.to_dict(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
