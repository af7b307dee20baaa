"""Compares what the report text says with what the detection head saw, observation by observation.

The text is re-read with the project's labeler (not trusted because we wrote it: a decoder can
hallucinate). Review is required when:
- a critical finding is reported by either side;
- the two sides disagree on an assessed observation (text-only = hallucination, head-only = omission);
- a reported finding's confidence is below the request's confidence_threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from libs.domain.labels import ABNORMAL_LABELS, CRITICAL_LABELS
from libs.domain.model_output import ModelOutput
from libs.domain.report import Report
from libs.domain.request import ReportRequest


@dataclass
class Verdict:
    requires_review: bool
    reasons: list[str] = field(default_factory=list)
    hallucinations: list[str] = field(default_factory=list)
    omissions: list[str] = field(default_factory=list)


def text_findings(report: Report) -> set[str]:
    """Observations the text states as present or possible (uncertain counts: it still needs a look)."""
    from libs.labeler import Status, label_report

    result = label_report(f"{report.findings_text}\n{report.impression}")
    return {
        name
        for name, obs in result.observations.items()
        if name in ABNORMAL_LABELS and obs.status in (Status.POSITIVE, Status.UNCERTAIN)
    }


def review_report(report: Report, output: ModelOutput, request: ReportRequest) -> Verdict:
    in_text = text_findings(report)
    by_head = {p.label for p in output.positives()}
    assessed = {p.label for p in output.predictions if p.assessed}
    verdict = Verdict(requires_review=False)

    for label in ABNORMAL_LABELS:
        if label in CRITICAL_LABELS and (label in in_text or label in by_head):
            who = " and ".join(s for s, hit in (("detection head", label in by_head), ("report text", label in in_text)) if hit)
            verdict.reasons.append(f"critical finding: {label} ({who})")
        if label in assessed and label in in_text and label not in by_head:
            verdict.hallucinations.append(label)
            verdict.reasons.append(f"disagreement: {label} in the text but not detected by the detection head")
        if label in by_head and label not in in_text:
            verdict.omissions.append(label)
            verdict.reasons.append(f"disagreement: {label} detected by the detection head but missing from the text")
    for finding in report.findings:
        if finding.confidence < request.confidence_threshold:
            verdict.reasons.append(
                f"low confidence: {finding.label} {finding.confidence:.2f} < {request.confidence_threshold:.2f}"
            )
    verdict.requires_review = bool(verdict.reasons)
    return verdict
