"""Compares what the report text says with what the detection head saw, observation by observation.

The text (Findings + Impression) is re-read with the project's labeler: it is not trusted because we
wrote it, since a decoder can hallucinate. Lines starting with "Not assessed" are skipped: they name
what the model did not look at, which is neither a positive nor a negative statement. The head's side
is its calibrated probability against the bundle's per-label threshold (ModelOutput).

A radiologist must review the study first (requires_radiologist_review) when:
1. critical: a critical finding (pneumothorax, fracture, lung lesion/mass, pleural effusion) is reported
   by either side. The text counts a finding it states as present or possible.
2. disagreement: the two sides disagree on an observation. In the text but not seen by the head is a
   hallucination (only for observations the head assesses: for the others it cannot say "absent");
   seen by the head but missing from the text is an omission.
3. laterality: the text puts a head-positive finding that has a box on one side and the box is on the
   other, read with the radiological convention (patient's right = image left on PA/AP,
   libs/qa/laterality.py). The text is read sentence by sentence (libs.reporting.statements), and any
   sentence stating the finding on the wrong side flags it, whether or not the text also names the
   finding elsewhere. The parenchymal opacities (PARENCHYMAL_FAMILY) are one family: a decoder words
   pneumonia as "left lower lobe opacity", so a side stated for any of them counts for a boxed member,
   except for members that have a box of their own (those are judged against their own box).
4. low confidence: a reported finding's confidence is below the request's confidence_threshold.
5. unsupported: the text rules out a critical finding the bundle does not assess ("no pneumothorax"
   from a model that cannot see pneumothorax). A decoder trained on real reports writes such
   sentences by habit; they would falsely reassure, so a radiologist must check them. Likewise a
   finding the text states as present or possible that the bundle does not assess (critical ones are
   already flagged by rule 1): nothing the model measured supports it.
6. coverage: the bundle does not assess one or more critical findings. Then no draft from it can rule
   them out, whatever its text says (or leaves unsaid), so every study goes to review: measured on the
   reference model, QA without this rule missed a fifth of the studies with a critical finding (their
   drafts simply did not mention it). A hospital bundle that assesses all four never triggers it.
7. borderline: the head calls an assessed observation negative (probability below the bundle's
   threshold) but its probability reaches the request's confidence_threshold. Findings exist only
   above the bundle's threshold, so rule 4 rarely fires; this is what the request's threshold can
   still catch: a negative the model was not sure of.

Each reason is one PHI-free sentence; the counts go into Report.qa for monitoring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from libs.domain.labels import ABNORMAL_LABELS, CRITICAL_LABELS
from libs.domain.model_output import ModelOutput
from libs.domain.report import QaSummary, Report
from libs.domain.request import ReportRequest
from libs.qa.laterality import ImageInfo, box_side, contradicts
from libs.reporting.statements import SentenceCheck, check_sentences, evidence_for
from libs.reporting.templating import NOT_ASSESSED_PREFIX

_PRESENT = ("positive", "uncertain")
# Parenchymal opacities: report language uses their terms for one another ("left lower lobe opacity"
# for a pneumonia), so the side one of them is given is a side claimed for the others (rule 3).
PARENCHYMAL_FAMILY: frozenset[str] = frozenset(
    {"Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis"}
)


@dataclass
class Verdict:
    requires_review: bool
    reasons: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)
    hallucinations: list[str] = field(default_factory=list)
    omissions: list[str] = field(default_factory=list)
    laterality_conflicts: list[str] = field(default_factory=list)
    low_confidence: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    critical_not_assessed: list[str] = field(default_factory=list)
    borderline: list[str] = field(default_factory=list)

    def summary(self) -> QaSummary:
        return QaSummary(
            critical=list(self.critical),
            hallucinations=list(self.hallucinations),
            omissions=list(self.omissions),
            laterality_conflicts=list(self.laterality_conflicts),
            low_confidence=list(self.low_confidence),
            unsupported=list(self.unsupported),
            critical_not_assessed=list(self.critical_not_assessed),
            borderline=list(self.borderline),
            hallucination_count=len(self.hallucinations),
            omission_count=len(self.omissions),
        )


def without_not_assessed(text: str) -> str:
    """`text` without its "Not assessed ..." lines (they name what the model did not look at)."""
    return "\n".join(line for line in text.splitlines()
                     if not line.strip().lower().startswith(NOT_ASSESSED_PREFIX.lower()))


def qa_text(report: Report) -> str:
    """The text QA re-reads: Findings and Impression without the not-assessed lines."""
    return without_not_assessed(f"{report.findings_text}\n{report.impression}")


def read_text(text: str):  # noqa: ANN201 - libs.labeler.LabelerResult
    from libs.labeler import label_report

    return label_report(text)


def text_findings(report: Report) -> set[str]:
    """Observations the text states as present or possible (uncertain counts: it still needs a look)."""
    reading = read_text(qa_text(report))
    return {name for name, obs in reading.observations.items() if name in ABNORMAL_LABELS and obs.status.value in _PRESENT}


def stated_sides(sentences: list[SentenceCheck], output: ModelOutput, label: str) -> list[str]:
    """The sides the text's sentences give `label`, one entry per statement with a side (rule 3).

    For a parenchymal finding, a sentence's side for another family member counts too, unless that
    member is head-positive with a box of its own: its side is then checked against that box instead."""
    kin = {label}
    if label in PARENCHYMAL_FAMILY:
        own_box = {p.label for p in output.positives() if p.bounding_box is not None}
        kin |= {member for member in PARENCHYMAL_FAMILY if member not in own_box}
    sides = []
    for sentence in sentences:
        for name in ABNORMAL_LABELS:
            side = sentence.sides.get(name)
            if name in kin and side is not None and sentence.stated.get(name) in _PRESENT:
                sides.append(side)
    return sides


def review_report(
    report: Report, output: ModelOutput, request: ReportRequest, image: ImageInfo | None = None
) -> Verdict:
    text = qa_text(report)
    reading = read_text(text)
    in_text = {
        name for name, obs in reading.observations.items() if name in ABNORMAL_LABELS and obs.status.value in _PRESENT
    }
    by_head = {p.label for p in output.positives()}
    assessed = {p.label for p in output.predictions if p.assessed}
    verdict = Verdict(requires_review=False)
    # Read sentence by sentence only when some head-positive finding has a box with a side.
    sentences: list[SentenceCheck] | None = None

    for label in ABNORMAL_LABELS:
        if label in CRITICAL_LABELS and (label in in_text or label in by_head):
            who = " and ".join(
                s for s, hit in (("detection head", label in by_head), ("report text", label in in_text)) if hit
            )
            verdict.critical.append(label)
            verdict.reasons.append(f"critical finding: {label} ({who})")
        if label in CRITICAL_LABELS and label not in assessed and reading.observations[label].status.value == "negative":
            verdict.unsupported.append(label)
            verdict.reasons.append(f"unsupported: the text rules out {label}, which this model does not assess")
        if label not in CRITICAL_LABELS and label not in assessed and label in in_text:
            verdict.unsupported.append(label)
            verdict.reasons.append(f"unsupported: the text reports {label}, which this model does not assess")
        if label in assessed and label in in_text and label not in by_head:
            verdict.hallucinations.append(label)
            verdict.reasons.append(f"disagreement: {label} in the text but not detected by the detection head")
        if label in by_head and label not in in_text:
            verdict.omissions.append(label)
            verdict.reasons.append(f"disagreement: {label} detected by the detection head but missing from the text")
        box = output.prediction(label).bounding_box
        side = box_side(box, image) if label in by_head else None
        if side in ("left", "right"):
            # Per sentence: a whole-report reading merges "right ... . left ..." into "bilateral".
            if sentences is None:
                sentences = check_sentences(text, evidence_for(output, image))
            text_side = next((t for t in stated_sides(sentences, output, label) if contradicts(t, side)), None)
            if text_side is not None:
                assert image is not None and box is not None
                verdict.laterality_conflicts.append(label)
                verdict.reasons.append(
                    f"laterality: {label} is {text_side} in the text but the detection head's box is on the "
                    f"patient's {side} (box x {box[0]}-{box[2]} of {image.width} columns, {image.view.value} view, "
                    "patient's right on the image left)"
                )
    blind = [label for label in ABNORMAL_LABELS if label in CRITICAL_LABELS and label not in assessed]
    if blind:
        verdict.critical_not_assessed = blind
        verdict.reasons.append(f"coverage: this model does not assess {', '.join(blind)}; the draft cannot rule "
                               f"{'it' if len(blind) == 1 else 'them'} out")
    for finding in report.findings:
        if finding.confidence < request.confidence_threshold:
            verdict.low_confidence.append(finding.label)
            verdict.reasons.append(
                f"low confidence: {finding.label} {finding.confidence:.2f} < {request.confidence_threshold:.2f}"
            )
    for pred in output.predictions:
        # No Finding is derived from the others, never a finding of its own.
        if pred.label not in ABNORMAL_LABELS or pred.probability is None or pred.threshold is None or pred.positive:
            continue
        if pred.probability >= request.confidence_threshold:
            verdict.borderline.append(pred.label)
            verdict.reasons.append(
                f"borderline: {pred.label} {pred.probability:.2f} is below the model's threshold "
                f"{pred.threshold:.2f} but reaches the review threshold {request.confidence_threshold:.2f}"
            )
    verdict.requires_review = bool(verdict.reasons)
    return verdict
