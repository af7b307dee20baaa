"""QA decision logic on constructed cases: when must a radiologist look first, and why."""

from __future__ import annotations

from libs.domain.labels import CHEXPERT_LABELS
from libs.domain.model_output import LabelPrediction, ModelOutput
from libs.domain.report import Finding, Report
from libs.domain.request import ReportRequest
from libs.qa.review import review_report


def output(probs: dict[str, float], assessed: set[str] | None = None) -> ModelOutput:
    assessed = set(CHEXPERT_LABELS) if assessed is None else assessed
    return ModelOutput(
        model_name="t", model_version="1",
        predictions=[
            LabelPrediction(label=label, probability=probs.get(label, 0.05) if label in assessed else None,
                            threshold=0.5 if label in assessed else None)
            for label in CHEXPERT_LABELS
        ],
    )


def report(text: str, impression: str, findings: list[Finding] | None = None) -> Report:
    return Report(report_id="r", study_id="s", findings=findings or [], findings_text=text, impression=impression,
                  recommendations="", model_version="1")


def test_agreeing_normal_report_needs_no_review() -> None:
    v = review_report(report("The heart size is normal. No consolidation.", "No acute abnormality."),
                      output({}), ReportRequest(confidence_threshold=0.5))
    assert v.requires_review is False
    assert v.reasons == []


def test_critical_finding_from_the_head_is_flagged_even_if_text_agrees() -> None:
    f = Finding(finding="Pneumothorax", label="Pneumothorax", confidence=0.97, is_critical=True)
    v = review_report(report("Small right pneumothorax.", "Right pneumothorax.", [f]),
                      output({"Pneumothorax": 0.97}), ReportRequest(confidence_threshold=0.5))
    assert v.requires_review
    assert v.reasons == ["critical finding: Pneumothorax (detection head and report text)"]


def test_text_finding_the_head_did_not_see_is_a_hallucination() -> None:
    v = review_report(report("There is cardiomegaly.", "Cardiomegaly."), output({}), ReportRequest())
    assert v.hallucinations == ["Cardiomegaly"]
    assert "disagreement: Cardiomegaly in the text but not detected by the detection head" in v.reasons


def test_head_finding_missing_from_the_text_is_an_omission() -> None:
    v = review_report(report("The lungs are clear.", "Normal chest."), output({"Edema": 0.8}), ReportRequest())
    assert v.omissions == ["Edema"]
    assert v.requires_review


def test_not_assessed_observation_in_text_is_not_called_a_hallucination() -> None:
    v = review_report(report("There is cardiomegaly.", "Cardiomegaly."),
                      output({}, assessed={"Pneumonia", "No Finding"}), ReportRequest())
    assert v.hallucinations == []


def test_finding_below_the_requests_confidence_threshold_is_flagged() -> None:
    f = Finding(finding="Atelectasis", label="Atelectasis", confidence=0.62)
    v = review_report(report("Bibasilar atelectasis.", "Atelectasis.", [f]), output({"Atelectasis": 0.62}),
                      ReportRequest(confidence_threshold=0.85))
    assert v.reasons == ["low confidence: Atelectasis 0.62 < 0.85"]
