"""Renders Findings / Impression / Recommendations in the hospital's template.

Templates:
- `standard`: a sentence for every observation the model assesses (positive ones with their confidence),
  then what it does not assess, so a reader can tell "not seen" from "not looked for".
- `concise`: positive findings only, one line each with confidence.
"""

from __future__ import annotations

from libs.core.errors import InputRejected
from libs.domain.labels import ABNORMAL_LABELS, CRITICAL_LABELS
from libs.domain.model_output import ModelOutput
from libs.domain.report import Finding, Report
from libs.domain.request import ReportRequest
from libs.reporting.phrases import PHRASES

TEMPLATES = ("standard", "concise")

PRELIMINARY_NOTICE = (
    "AI-generated preliminary draft: it must be reviewed, edited as needed and signed by a radiologist."
)


def check_template(name: str) -> str:
    if name not in TEMPLATES:
        raise InputRejected(f"unknown report_template {name!r}; available: {', '.join(TEMPLATES)}")
    return name


def render_report(job_id: str, study_uid: str, output: ModelOutput, request: ReportRequest) -> Report:
    template = check_template(request.report_template)
    positives = output.positives()
    findings = [
        Finding(
            finding=PHRASES[p.label][0],
            label=p.label,
            confidence=round(float(p.probability), 4),
            bounding_box=p.bounding_box,
            is_critical=p.label in CRITICAL_LABELS,
        )
        for p in sorted(positives, key=lambda p: -float(p.probability))
    ]
    not_assessed = [p.label for p in output.predictions if not p.assessed and p.label != "No Finding"]

    if output.text:
        findings_text = output.text.strip()
    elif template == "concise":
        findings_text = "\n".join(f"{f.finding} (confidence {f.confidence:.2f})." for f in findings) or (
            "No abnormality detected among the assessed findings."
        )
    else:
        sentences = []
        for label in ABNORMAL_LABELS:
            pred = output.prediction(label)
            if not pred.assessed:
                continue
            if pred.positive:
                sentences.append(f"{PHRASES[label][0]} (confidence {pred.probability:.2f}).")
            else:
                sentences.append(PHRASES[label][1])
        if not_assessed:
            sentences.append("Not assessed by this model: " + ", ".join(not_assessed).lower() + ".")
        findings_text = " ".join(sentences)

    if findings:
        impression = "; ".join(f.finding for f in findings) + "."
    else:
        impression = "No acute cardiopulmonary abnormality detected among the findings the model assesses."

    critical = [f.finding.lower() for f in findings if f.is_critical]
    recommendations = []
    if critical:
        recommendations.append(f"Suspected critical finding ({', '.join(critical)}): immediate radiologist review.")
    elif findings:
        recommendations.append("Clinical correlation recommended.")
    recommendations.append(PRELIMINARY_NOTICE)

    return Report(
        report_id=f"rpt-{job_id}",
        study_id=study_uid,
        findings=findings,
        findings_text=findings_text,
        impression=impression,
        recommendations=" ".join(recommendations),
        not_assessed=not_assessed,
        model_version=output.model_version,
    )
