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


# ---------------------------------------------------------------- laterality, not-assessed lines, summary

from libs.domain.study import View  # noqa: E402
from libs.qa.laterality import ImageInfo, box_side, contradicts  # noqa: E402

PA = ImageInfo(width=1000, view=View.PA)


def boxed(probs: dict[str, float], boxes: dict[str, list[int]]) -> ModelOutput:
    out = output(probs)
    for pred in out.predictions:
        pred.bounding_box = boxes.get(pred.label)
    return out


def test_box_side_follows_the_radiological_convention() -> None:
    # PA/AP as displayed: the patient's right is on the image's left (small x).
    assert box_side([100, 200, 300, 500], PA) == "right"
    assert box_side([700, 200, 900, 500], PA) == "left"
    assert box_side([100, 200, 300, 500], ImageInfo(width=1000, view=View.AP)) == "right"
    assert box_side([460, 200, 540, 500], PA) is None  # centred on the midline: no side
    assert box_side([200, 200, 800, 500], PA) == "bilateral"
    assert box_side([100, 200, 300, 500], ImageInfo(width=1000, view=View.LATERAL)) is None
    assert box_side([100, 200, 300, 500], ImageInfo(width=1000, view=View.UNKNOWN)) is None
    assert box_side(None, PA) is None and box_side([1, 2, 3, 4], None) is None
    assert contradicts("left", "right") and not contradicts("bilateral", "right")
    assert not contradicts("left", "bilateral") and not contradicts(None, "left")


def test_text_side_contradicting_the_box_is_flagged() -> None:
    out = boxed({"Atelectasis": 0.9}, {"Atelectasis": [100, 600, 350, 900]})  # image left = patient's right
    f = Finding(finding="Atelectasis", label="Atelectasis", confidence=0.9)
    v = review_report(report("Left basilar atelectasis.", "Left atelectasis.", [f]), out, ReportRequest(), image=PA)
    assert v.requires_review
    assert v.laterality_conflicts == ["Atelectasis"]
    assert v.reasons == ["laterality: Atelectasis is left in the text but the detection head's box is on the "
                         "patient's right (box x 100-350 of 1000 columns, PA view, patient's right on the image left)"]


def test_matching_side_midline_box_and_bilateral_text_are_not_laterality_conflicts() -> None:
    f = Finding(finding="Atelectasis", label="Atelectasis", confidence=0.9)
    cases = [
        ("Right basilar atelectasis.", [100, 600, 350, 900]),  # same side
        ("Left basilar atelectasis.", [470, 600, 530, 900]),  # box on the midline
        ("Bibasilar atelectasis.", [100, 600, 350, 900]),  # text bilateral
        ("Atelectasis.", [100, 600, 350, 900]),  # no side in the text
    ]
    for text, box in cases:
        out = boxed({"Atelectasis": 0.9}, {"Atelectasis": box})
        v = review_report(report(text, "Atelectasis.", [f]), out, ReportRequest(), image=PA)
        assert v.laterality_conflicts == [], text
        assert v.requires_review is False, (text, v.reasons)


def test_no_laterality_check_on_a_lateral_or_unnamed_view_or_without_geometry() -> None:
    out = boxed({"Atelectasis": 0.9}, {"Atelectasis": [100, 600, 350, 900]})
    f = Finding(finding="Atelectasis", label="Atelectasis", confidence=0.9)
    r = report("Left basilar atelectasis.", "Left atelectasis.", [f])
    for image in (ImageInfo(width=1000, view=View.LATERAL), ImageInfo(width=1000, view=View.UNKNOWN), None):
        assert review_report(r, out, ReportRequest(), image=image).laterality_conflicts == []


def test_possible_critical_finding_in_text_is_flagged() -> None:
    v = review_report(report("Possible small left apical pneumothorax.", "Possible pneumothorax."), output({}),
                      ReportRequest())
    assert "critical finding: Pneumothorax (report text)" in v.reasons
    assert v.hallucinations == ["Pneumothorax"]


def test_not_assessed_lines_are_not_read_as_findings() -> None:
    text = "The heart size is normal.\nNot assessed by this model: fracture, pneumothorax, lung lesion."
    v = review_report(report(text, "No acute abnormality."),
                      output({}, assessed=set(CHEXPERT_LABELS) - {"Fracture", "Pneumothorax", "Lung Lesion"}),
                      ReportRequest())
    # The line is neither a finding nor a negative statement: only the coverage reason remains.
    assert v.critical == [] and v.unsupported == []
    assert v.reasons == ["coverage: this model does not assess Lung Lesion, Pneumothorax, Fracture; "
                         "the draft cannot rule them out"]


def test_critical_finding_the_head_sees_but_the_text_omits_is_both_critical_and_an_omission() -> None:
    v = review_report(report("The lungs are clear.", "Normal chest."), output({"Fracture": 0.7}), ReportRequest())
    assert v.reasons == ["critical finding: Fracture (detection head)",
                         "disagreement: Fracture detected by the detection head but missing from the text"]


def test_summary_counts_for_monitoring() -> None:
    f = Finding(finding="Edema", label="Edema", confidence=0.55)
    v = review_report(report("Mild pulmonary edema. Cardiomegaly. Right pneumothorax.", "Edema.", [f]),
                      output({"Edema": 0.55, "Atelectasis": 0.9}), ReportRequest(confidence_threshold=0.6))
    s = v.summary()
    assert s.hallucinations == ["Cardiomegaly", "Pneumothorax"] and s.hallucination_count == 2
    assert s.omissions == ["Atelectasis"] and s.omission_count == 1
    assert s.critical == ["Pneumothorax"]
    assert s.low_confidence == ["Edema"]
    assert v.requires_review


def test_text_ruling_out_a_critical_finding_the_model_cannot_see_is_flagged() -> None:
    v = review_report(report("No pleural effusion or pneumothorax is seen. No pneumonia.", "No active disease."),
                      output({}, assessed={"Pneumonia", "No Finding"}), ReportRequest())
    assert v.requires_review
    assert v.unsupported == ["Pneumothorax", "Pleural Effusion"]
    assert "unsupported: the text rules out Pneumothorax, which this model does not assess" in v.reasons
    # Ruling out an assessed observation is a normal statement, not a reason.
    assert not any("Pneumonia" in r for r in v.reasons)


def test_text_reporting_a_finding_the_model_cannot_see_is_flagged() -> None:
    # A pneumonia-only bundle whose decoder writes "the heart is enlarged": a language-model habit,
    # not something the model measured.
    v = review_report(report("The heart is enlarged. No focal consolidation.", "Cardiomegaly."),
                      output({}, assessed={"Pneumonia", "No Finding"}), ReportRequest())
    assert v.requires_review
    assert v.unsupported == ["Cardiomegaly"]
    assert "unsupported: the text reports Cardiomegaly, which this model does not assess" in v.reasons
    # ... and with a bundle that assesses it and sees it, there is nothing to flag.
    v = review_report(report("The heart is enlarged.", "Cardiomegaly."), output({"Cardiomegaly": 0.9}), ReportRequest())
    assert v.reasons == []


def test_a_model_blind_to_a_critical_finding_sends_every_study_to_review() -> None:
    """Even a clean normal draft: the model cannot rule out what it does not assess."""
    normal = report("The heart is normal in size. The lungs are clear.", "No acute disease.")
    v = review_report(normal, output({}, assessed=set(CHEXPERT_LABELS) - {"Pleural Effusion"}), ReportRequest())
    assert v.requires_review and v.critical_not_assessed == ["Pleural Effusion"]
    assert v.reasons == ["coverage: this model does not assess Pleural Effusion; the draft cannot rule it out"]
    assert v.summary().critical_not_assessed == ["Pleural Effusion"]
    # A model that assesses all four critical findings and sees none: nothing to flag.
    v = review_report(normal, output({}), ReportRequest())
    assert not v.requires_review and v.critical_not_assessed == []


# ---------------------------------------------------------------- laterality for every boxed finding

RIGHT_BOX = [100, 300, 350, 800]  # image left = patient's right on a PA film
LEFT_BOX = [650, 300, 900, 800]


def test_parenchymal_side_in_opacity_wording_is_checked_against_a_pneumonia_box() -> None:
    # A decoder words pneumonia as "left lower lobe opacity": the labeler gives that side to Lung
    # Opacity, not to Pneumonia, and the whole-report check let it pass beside a right-sided box.
    out = boxed({"Pneumonia": 0.95, "Lung Opacity": 0.9}, {"Pneumonia": RIGHT_BOX})
    f = Finding(finding="Pneumonia", label="Pneumonia", confidence=0.95)
    v = review_report(report("Left lower lobe opacity.", "Pneumonia.", [f]), out, ReportRequest(), image=PA)
    assert v.laterality_conflicts == ["Pneumonia"]
    assert v.reasons == ["laterality: Pneumonia is left in the text but the detection head's box is on the "
                         "patient's right (box x 100-350 of 1000 columns, PA view, patient's right on the image left)"]


def test_parenchymal_side_matching_the_box_or_bilateral_is_not_flagged() -> None:
    f = Finding(finding="Pneumonia", label="Pneumonia", confidence=0.95)
    for text in ("Right lower lobe opacity.", "Bilateral lower lobe opacities.", "Bilateral patchy opacities."):
        out = boxed({"Pneumonia": 0.95, "Lung Opacity": 0.9}, {"Pneumonia": RIGHT_BOX})
        v = review_report(report(text, "Pneumonia.", [f]), out, ReportRequest(), image=PA)
        assert v.laterality_conflicts == [], text
        assert v.requires_review is False, (text, v.reasons)


def test_side_is_read_per_sentence() -> None:
    # The whole-report reading of these two sentences is "bilateral", which never contradicts.
    out = boxed({"Pneumonia": 0.95}, {"Pneumonia": RIGHT_BOX})
    f = Finding(finding="Pneumonia", label="Pneumonia", confidence=0.95)
    v = review_report(report("Right lower lobe pneumonia. Left upper lobe pneumonia.", "Pneumonia.", [f]), out,
                      ReportRequest(), image=PA)
    assert v.laterality_conflicts == ["Pneumonia"]


def test_a_boxed_family_member_is_judged_by_its_own_box_only() -> None:
    out = boxed({"Pneumonia": 0.95, "Atelectasis": 0.9}, {"Pneumonia": RIGHT_BOX, "Atelectasis": LEFT_BOX})
    findings = [Finding(finding=label, label=label, confidence=0.9) for label in ("Pneumonia", "Atelectasis")]
    r = report("Right lower lobe pneumonia. Left basilar atelectasis.", "Pneumonia and atelectasis.", findings)
    assert review_report(r, out, ReportRequest(), image=PA).laterality_conflicts == []
    # ... and each one still is: swapping the boxes flags both.
    out = boxed({"Pneumonia": 0.95, "Atelectasis": 0.9}, {"Pneumonia": LEFT_BOX, "Atelectasis": RIGHT_BOX})
    assert review_report(r, out, ReportRequest(), image=PA).laterality_conflicts == ["Pneumonia", "Atelectasis"]


def test_sides_outside_the_family_do_not_count_for_it() -> None:
    # An effusion is not a parenchymal opacity: its side says nothing about the pneumonia's.
    out = boxed({"Pneumonia": 0.95, "Pleural Effusion": 0.9}, {"Pneumonia": RIGHT_BOX})
    findings = [Finding(finding=label, label=label, confidence=0.9) for label in ("Pneumonia", "Pleural Effusion")]
    v = review_report(report("Pneumonia. Small left pleural effusion.", "Pneumonia.", findings), out,
                      ReportRequest(), image=PA)
    assert v.laterality_conflicts == []
    # An effusion box is checked against the effusion's own side, whatever the family says.
    out = boxed({"Pneumonia": 0.95, "Pleural Effusion": 0.9}, {"Pleural Effusion": RIGHT_BOX})
    v = review_report(report("Left lower lobe pneumonia. Small left pleural effusion.", "Pneumonia.", findings), out,
                      ReportRequest(), image=PA)
    assert v.laterality_conflicts == ["Pleural Effusion"]


def test_negated_side_is_not_a_stated_side() -> None:
    out = boxed({"Pneumonia": 0.95}, {"Pneumonia": RIGHT_BOX})
    f = Finding(finding="Pneumonia", label="Pneumonia", confidence=0.95)
    v = review_report(report("Right lower lobe pneumonia. No left lung opacity.", "Pneumonia.", [f]), out,
                      ReportRequest(), image=PA)
    assert v.laterality_conflicts == []


# ---------------------------------------------------------------- borderline negatives


def thresholded(probs: dict[str, float], thresholds: dict[str, float]) -> ModelOutput:
    out = output(probs)
    for pred in out.predictions:
        pred.threshold = thresholds.get(pred.label, pred.threshold)
    return out


def test_negative_reaching_the_review_threshold_is_borderline() -> None:
    out = thresholded({"Pneumonia": 0.7}, {"Pneumonia": 0.889})
    v = review_report(report("No focal consolidation.", "No pneumonia."), out, ReportRequest(confidence_threshold=0.5))
    assert v.requires_review
    assert v.borderline == ["Pneumonia"]
    assert v.reasons == ["borderline: Pneumonia 0.70 is below the model's threshold 0.89 but reaches the review "
                         "threshold 0.50"]
    assert v.summary().borderline == ["Pneumonia"]


def test_borderline_needs_a_negative_at_or_above_the_review_threshold() -> None:
    normal = report("No focal consolidation.", "No pneumonia.")
    out = thresholded({"Pneumonia": 0.45}, {"Pneumonia": 0.889})
    assert review_report(normal, out, ReportRequest(confidence_threshold=0.5)).borderline == []
    out = thresholded({"Pneumonia": 0.7}, {"Pneumonia": 0.889})
    assert review_report(normal, out, ReportRequest(confidence_threshold=0.75)).borderline == []
    assert review_report(normal, out, ReportRequest(confidence_threshold=0.7)).borderline == ["Pneumonia"]  # inclusive
    # A positive is a finding, not a borderline negative; a not-assessed observation has no probability.
    f = Finding(finding="Pneumonia", label="Pneumonia", confidence=0.95)
    v = review_report(report("Pneumonia.", "Pneumonia.", [f]), thresholded({"Pneumonia": 0.95}, {"Pneumonia": 0.889}),
                      ReportRequest(confidence_threshold=0.5))
    assert v.borderline == [] and v.reasons == []
    v = review_report(normal, output({}, assessed={"No Finding", "Pneumonia"}), ReportRequest(confidence_threshold=0.0))
    assert v.borderline == ["Pneumonia"]  # 0.05 >= 0.0: only the assessed one, never No Finding
