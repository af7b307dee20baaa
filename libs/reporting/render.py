"""Renders Findings / Impression / Recommendations with the request's report template.

Templates are YAML files (libs/reporting/templates/, see templating.py): `standard` (a sentence per
assessed observation, with confidence), `concise` (positive findings only, no confidence) and
`structured` (one line per anatomical region, with confidence and box location).

Where the text comes from:
- The model wrote no text (a detection-only bundle): every sentence comes from the detection head's
  positives and negatives, in the template's wording. The side of a finding comes from its box
  (radiological convention, libs/qa/laterality.py); severity is not known.
- The model wrote text (ModelOutput.text): its Findings and Impression are kept sentence by sentence
  only where the model has evidence (libs.reporting.grounding / statements: nothing about observations
  the bundle does not assess, nothing against the head, no side without a matching focal box, no
  comparison or age-inappropriate wording). Every head-positive finding the kept text does not state is
  added in the template's wording, so is every assessed negative for templates that speak of each
  assessed observation; the Impression is the kept one only when it names every positive finding,
  otherwise the template's summary of the head. What was dropped or added is in Report.text_grounding.
  A draft therefore never calls itself normal while a finding is positive.

Either way, observations the bundle does not assess are listed on their own "Not assessed" line:
"not assessed" is never written as negative.
"""

from __future__ import annotations

import re
from dataclasses import replace

from libs.core.errors import InputRejected
from libs.domain.feedback import FindingCorrection
from libs.domain.labels import ABNORMAL_LABELS, CRITICAL_LABELS
from libs.domain.model_output import LabelPrediction, ModelOutput
from libs.domain.report import AssessedObservation, Finding, Report, TextGrounding
from libs.domain.request import ReportRequest
from libs.qa.laterality import ImageInfo, box_side
from libs.reporting.grounding import ground
from libs.reporting.phrases import LIST_NAMES, PHRASES, finding_phrase
from libs.reporting.statements import evidence_for
from libs.reporting.templating import (
    NOT_ASSESSED_PREFIX,
    PRELIMINARY_NOTICE,
    ReportTemplate,
    TemplateError,
    available_templates,
    load_template,
)

__all__ = [
    "NOT_ASSESSED_PREFIX",
    "PRELIMINARY_NOTICE",
    "TEMPLATES",
    "check_template",
    "document_text",
    "render_report",
    "split_model_text",
]

TEMPLATES: tuple[str, ...] = available_templates()

_IMPRESSION = re.compile(r"(?im)^[ \t]*impression[ \t]*:[ \t]*")
_FINDINGS = re.compile(r"(?i)^\s*findings[ \t]*:[ \t]*")


def check_template(name: str) -> str:
    """The template's name when it exists and loads; InputRejected (422 at the gateway) otherwise."""
    names = available_templates()
    if name not in names:
        raise InputRejected(f"unknown report_template {name!r}; available: {', '.join(names)}")
    try:
        load_template(name)
    except TemplateError as exc:  # a broken template file is the server's fault, but rejecting is safe
        raise InputRejected(f"report_template {name!r} cannot be used: {exc}") from None
    return name


def split_model_text(text: str) -> tuple[str, str | None]:
    """(findings, impression or None) from generated text with optional FINDINGS:/IMPRESSION: headers."""
    match = _IMPRESSION.search(text)
    if match is None:
        findings, impression = text, None
    else:
        findings, impression = text[: match.start()], text[match.end():].strip() or None
    findings = _FINDINGS.sub("", findings.strip(), count=1).strip()
    return findings, impression


def render_report(
    job_id: str,
    study_uid: str,
    output: ModelOutput,
    request: ReportRequest,
    image: ImageInfo | None = None,
    asserted: dict[str, FindingCorrection] | None = None,
) -> Report:
    """`asserted`: a radiologist's calls by observation (a corrected draft, libs/feedback/corrections.py).
    `output` then already carries them as the head's calls; the side and severity they give replace the
    box's side and the text's severity, and the text states no model confidence: it is the radiologist's."""
    template = load_template(check_template(request.report_template))
    asserted = asserted or {}
    if asserted:
        template = template.model_copy(update={"show_confidence": False})
    not_assessed = [p.label for p in output.predictions if not p.assessed and p.label != "No Finding"]
    context = request.clinical_context
    evidence = evidence_for(output, image, age=context.age if context else None,
                            text_sees_image=output.text_sees_image)
    sides = {label: call.laterality for label, call in asserted.items() if call.present and call.laterality}
    if sides:  # a side the radiologist gives is the one the text may state
        evidence = replace(evidence, box_sides={**evidence.box_sides, **sides})
    grounded = None
    if output.text and output.text.strip():
        model_findings, model_impression = split_model_text(output.text)
        grounded = ground(model_findings, model_impression, evidence)
    severities = _text_severities(grounded) if grounded is not None and output.text_sees_image else {}

    findings: list[Finding] = []
    for pred in output.positives():
        # The side comes from the head's (focal) box, never from the text: a side the text states is
        # kept only where it matches the box (libs.reporting.statements, "location").
        laterality = box_side(pred.bounding_box, image) if PHRASES[pred.label].lateral else None
        severity = severities.get(pred.label)
        box = pred.bounding_box
        call = asserted.get(pred.label)
        if call is not None:
            side = call.laterality if PHRASES[pred.label].lateral else None
            if side and side != laterality:
                box = None  # the box marks the other side: its location would contradict the call
            laterality = side or laterality
            severity = call.severity or severity
        findings.append(
            Finding(
                finding=finding_phrase(pred.label, severity, laterality),
                label=pred.label,
                confidence=round(float(pred.probability), 4),  # type: ignore[arg-type]
                severity=severity,
                laterality=laterality,
                bounding_box=box,
                is_critical=pred.label in CRITICAL_LABELS,
            )
        )
    findings.sort(key=lambda f: (not f.is_critical, -f.confidence))
    by_label = {f.label: f for f in findings}

    not_assessed_line = _not_assessed_line(template, not_assessed)
    if grounded is not None:
        findings_text = _join_lines([_grounded_findings(template, output, grounded, by_label), not_assessed_line])
        impression = _grounded_impression(template, grounded, findings)
    else:
        findings_text = _join_lines([_findings_body(template, output, by_label), not_assessed_line])
        impression = _impression(template, findings)

    return Report(
        report_id=f"rpt-{job_id}",
        study_id=study_uid,
        findings=findings,
        observations=_assessed_observations(output),
        findings_text=findings_text,
        impression=impression,
        recommendations=_recommendations(template, findings),
        not_assessed=not_assessed,
        model_version=output.model_version,
        template=template.name,
        text_grounding=_grounding_summary(grounded, by_label),
    )


def _assessed_observations(output: ModelOutput) -> list[AssessedObservation]:
    """Every assessed observation with its probability and threshold, negatives included."""
    out = []
    for pred in output.predictions:
        if not pred.assessed or pred.threshold is None or pred.label == "No Finding":
            continue
        present = bool(pred.positive)
        out.append(AssessedObservation(label=pred.label, probability=round(float(pred.probability), 4),
                                       threshold=round(float(pred.threshold), 6), present=present,
                                       is_critical=pred.label in CRITICAL_LABELS,
                                       bounding_box=pred.bounding_box if present else None))
    return out


def _grounded_findings(template: ReportTemplate, output: ModelOutput, grounded, by_label: dict[str, Finding]) -> str:
    """The kept generated sentences, with the head-positive findings they do not state added before them
    and (for templates that speak of every assessed observation) the unstated negatives after them."""
    added_positive, added_negative = [], []
    for label in ABNORMAL_LABELS:
        pred = output.prediction(label)
        if not pred.assessed:
            continue
        if label in by_label:
            if not grounded.states_present(label):
                added_positive.append(_positive_sentence(template, by_label[label]))
        elif template.findings.layout != "positives" and not grounded.states_absent(label):
            added_negative.append(_negative_sentence(template, label))
    parts = [*added_positive, grounded.findings_text, *added_negative]
    body = template.findings.separator.join(p for p in parts if p)
    if not body and template.findings.layout == "positives":
        body = template.findings.none_positive.format()
    return body


def _grounded_impression(template: ReportTemplate, grounded, findings: list[Finding]) -> str:
    """The kept generated impression when it names every head-positive finding (and, with none, says
    something supported); otherwise the template's impression from the head."""
    kept = grounded.impression_text
    if findings:
        if kept and all(grounded.states_present(f.label, "impression") for f in findings):
            return kept
        return _impression(template, findings)
    return kept or _impression(template, findings)


def _text_severities(grounded) -> dict[str, str]:
    """Severity the kept text gives each observation (only used when the text was written from the image)."""
    text = " ".join(t for t in (grounded.findings_text, grounded.impression_text) if t)
    if not text:
        return {}
    reading = _read(text)
    return {label: obs.severity for label, obs in reading.observations.items()
            if obs.severity and obs.status.value in ("positive", "uncertain")}


def _grounding_summary(grounded, by_label: dict[str, Finding]) -> TextGrounding | None:
    if grounded is None:
        return None
    return TextGrounding(
        kept_sentences=len(grounded.findings) + len(grounded.impression),
        dropped_sentences=grounded.dropped_sentences,
        dropped_by_reason=dict(sorted(grounded.dropped.items())),
        added_from_head=[label for label in by_label if not grounded.states_present(label)],
    )


# ---------------------------------------------------------------- pieces

def _read(text: str):  # noqa: ANN202 - LabelerResult
    from libs.labeler import label_report

    return label_report(text)


def _confidence(template: ReportTemplate, value: float) -> str:
    return template.confidence.format(confidence=value) if template.show_confidence else ""


def _location(template: ReportTemplate, box: list[int] | None) -> str:
    if not template.show_location or not box or len(box) != 4:
        return ""
    x0, y0, x1, y1 = box
    return template.location.format(x0=x0, y0=y0, x1=x1, y1=y1)


def _positive_sentence(template: ReportTemplate, finding: Finding) -> str:
    return template.findings.positive.format(
        finding=finding.finding, label=finding.label, confidence=_confidence(template, finding.confidence),
        location=_location(template, finding.bounding_box),
    )


def _negative_sentence(template: ReportTemplate, label: str) -> str:
    return template.findings.negative.format(negative=PHRASES[label].negative, label=label)


def _label_sentence(template: ReportTemplate, pred: LabelPrediction, by_label: dict[str, Finding]) -> str | None:
    if not pred.assessed:
        return None
    if pred.label in by_label:
        return _positive_sentence(template, by_label[pred.label])
    return _negative_sentence(template, pred.label)


def _findings_body(template: ReportTemplate, output: ModelOutput, by_label: dict[str, Finding]) -> str:
    spec = template.findings
    if spec.layout == "positives":
        ordered = sorted(by_label.values(), key=lambda f: (not f.is_critical, -f.confidence))
        if not ordered:
            return spec.none_positive.format()
        return spec.separator.join(_positive_sentence(template, f) for f in ordered)
    if spec.layout == "sentences":
        sentences = [_label_sentence(template, output.prediction(label), by_label) for label in ABNORMAL_LABELS]
        return spec.separator.join(s for s in sentences if s)
    lines = []
    for region in spec.regions:
        sentences = [_label_sentence(template, output.prediction(label), by_label) for label in region.labels]
        sentences = [s for s in sentences if s]
        if sentences:  # a region whose observations are all not assessed is named on the not-assessed line
            lines.append(spec.region_line.format(heading=region.heading, sentences=spec.separator.join(sentences)))
    return spec.line_separator.join(lines)


def _not_assessed_line(template: ReportTemplate, not_assessed: list[str]) -> str | None:
    if not not_assessed:
        return None
    return template.findings.not_assessed.format(
        labels=", ".join(LIST_NAMES[label] for label in not_assessed), count=len(not_assessed)
    )


def _join_lines(parts: list[str | None]) -> str:
    # The not-assessed statement always stands on a line of its own: QA skips such lines.
    return "\n".join(p.strip() for p in parts if p and p.strip())


def _impression(template: ReportTemplate, findings: list[Finding]) -> str:
    spec = template.impression
    if not findings:
        return spec.normal.format()
    parts = [
        spec.positive.format(finding=f.finding if i == 0 else _lower_first(f.finding), label=f.label,
                             confidence=_confidence(template, f.confidence))
        for i, f in enumerate(findings)
    ]
    return spec.join.join(parts) + spec.suffix


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _recommendations(template: ReportTemplate, findings: list[Finding]) -> str:
    spec = template.recommendations
    critical = [f.finding.lower() for f in findings if f.is_critical]
    if critical:
        first = spec.critical.format(findings=", ".join(critical))
    elif findings:
        first = spec.positive.format(findings=", ".join(f.finding.lower() for f in findings))
    else:
        first = spec.normal.format()
    return " ".join(s for s in (first, spec.notice.format()) if s)


def review_summary(report: Report) -> str:
    if report.requires_radiologist_review:
        reasons = "; ".join(report.review_reasons) or "no reason recorded"
        return f"Flagged for radiologist review before use: {reasons}."
    return "QA found no disagreement; the draft still requires radiologist sign-off."


def document_text(report: Report, examination: str) -> str:
    """The whole report as plain text in its template's layout (what FHIR presentedForm carries)."""
    name = report.template if report.template in available_templates() else "standard"
    template = load_template(name)
    text = template.document.format(
        title=template.title,
        examination=examination,
        findings=report.findings_text,
        impression=report.impression,
        recommendations=report.recommendations,
        review=review_summary(report),
        model_version=report.model_version,
    )
    # No run of blank lines where a section was empty.
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
