"""Rendering: templates, "not assessed" never negative, confidence where asked, model text, labeler fill-in,
and every template's wording read back by the labeler as what the head saw (QA would flag otherwise)."""

from __future__ import annotations

import pytest

from libs.domain.labels import ABNORMAL_LABELS, CRITICAL_LABELS
from libs.domain.request import ReportRequest
from libs.domain.study import View
from libs.qa.laterality import ImageInfo
from libs.qa.review import review_report
from libs.reporting.phrases import PHRASES
from libs.reporting.render import document_text, render_report, split_model_text
from libs.reporting.templating import available_templates
from tests.reporting.helpers import model_output

PA = ImageInfo(width=1000, view=View.PA)


def render(output, template: str = "standard", image: ImageInfo | None = PA, threshold: float = 0.5):  # noqa: ANN001, ANN201
    return render_report("job-1", "1.2.3", output, ReportRequest(report_template=template,
                                                                   confidence_threshold=threshold), image=image)


@pytest.mark.parametrize("template", ["standard", "concise", "structured"])
def test_not_assessed_is_never_written_as_negative(template: str) -> None:
    out = model_output({"Pleural Effusion": 0.9}, not_assessed={"Fracture", "Cardiomegaly"})
    report = render(out, template)
    text = f"{report.findings_text}\n{report.impression}"
    assert report.not_assessed == ["Cardiomegaly", "Fracture"]
    assert PHRASES["Fracture"].negative not in text
    assert PHRASES["Cardiomegaly"].negative not in text
    [line] = [line for line in report.findings_text.splitlines() if line.startswith("Not assessed")]
    assert "cardiomegaly, fracture" in line
    # Assessed negatives are stated in the sentence/region templates, not in the concise one.
    assert (PHRASES["Pneumothorax"].negative in text) is (template != "concise")


def test_everything_assessed_means_no_not_assessed_line() -> None:
    report = render(model_output({}))
    assert report.not_assessed == []
    assert "Not assessed" not in report.findings_text
    assert report.impression == "No acute cardiopulmonary abnormality among the observations this model assesses."


def test_confidence_is_shown_only_where_the_template_asks() -> None:
    out = model_output({"Pleural Effusion": 0.912, "Edema": 0.7})
    assert "Pleural effusion (confidence 0.91)" in render(out, "standard").findings_text
    assert "(confidence 0.91)" in render(out, "structured").findings_text
    concise = render(out, "concise")
    assert "confidence" not in concise.findings_text + concise.impression
    # The structured findings carry the confidence whatever the template.
    assert {f.label: f.confidence for f in concise.findings} == {"Pleural Effusion": 0.912, "Edema": 0.7}


def test_structured_template_groups_by_region_and_shows_the_box() -> None:
    out = model_output({"Pneumothorax": 0.95}, boxes={"Pneumothorax": [100, 50, 300, 400]})
    lines = render(out, "structured").findings_text.splitlines()
    assert lines[0].startswith("Lungs: No focal lung opacity.")
    assert lines[1] == ("Pleura: Right pneumothorax (confidence 0.95) (image region x 100-300, y 50-400). "
                        "No pleural effusion. No pleural thickening or plaque.")
    assert [line.split(":")[0] for line in lines] == ["Lungs", "Pleura", "Heart and mediastinum", "Bones", "Other"]


def test_side_of_a_finding_comes_from_its_box_without_model_text() -> None:
    # PA convention: image left half = patient's right.
    out = model_output({"Pleural Effusion": 0.9, "Atelectasis": 0.8, "Cardiomegaly": 0.7},
                       boxes={"Pleural Effusion": [600, 500, 950, 900], "Atelectasis": [50, 500, 400, 900],
                              "Cardiomegaly": [300, 400, 800, 800]})
    by_label = {f.label: f for f in render(out).findings}
    assert by_label["Pleural Effusion"].laterality == "left"
    assert by_label["Pleural Effusion"].finding == "Left pleural effusion"
    assert by_label["Atelectasis"].laterality == "right"
    assert by_label["Cardiomegaly"].laterality is None  # midline structure: never a side
    lateral = {f.label: f for f in render(out, image=ImageInfo(width=1000, view=View.LATERAL)).findings}
    assert lateral["Pleural Effusion"].laterality is None


def test_critical_findings_come_first_and_are_recommended_for_immediate_review() -> None:
    report = render(model_output({"Edema": 0.95, "Pneumothorax": 0.6}))
    assert [f.label for f in report.findings] == ["Pneumothorax", "Edema"]
    assert report.findings[0].is_critical and not report.findings[1].is_critical
    assert report.impression == "Pneumothorax; pulmonary edema."
    assert report.recommendations.startswith("Suspected critical finding (pneumothorax): immediate radiologist review.")
    assert "must be reviewed" in report.recommendations


def test_model_text_is_kept_only_where_the_head_and_its_box_support_it() -> None:
    text = ("FINDINGS: Moderate left pleural effusion. Mild pulmonary edema. No pneumothorax.\n"
            "IMPRESSION: Left effusion and mild edema.")
    # The box is on the patient's right: the text's "left" has no evidence, so its sentence goes and the
    # head's finding is written with the box's side; the edema and pneumothorax sentences agree with the head.
    out = model_output({"Pleural Effusion": 0.9, "Edema": 0.8}, text=text,
                       boxes={"Pleural Effusion": [50, 500, 400, 900]})
    report = render(out)
    first_line = report.findings_text.splitlines()[0]
    assert first_line.startswith("Right pleural effusion (confidence 0.90). Mild pulmonary edema. No pneumothorax.")
    assert "left" not in report.findings_text.lower()
    # The impression named the wrong side: rebuilt from the head.
    assert report.impression == "Right pleural effusion; pulmonary edema."
    by_label = {f.label: f for f in report.findings}
    assert by_label["Pleural Effusion"].laterality == "right"
    assert by_label["Edema"].severity is None  # a text written without the image has no evidence of severity
    assert report.text_grounding.dropped_by_reason == {"location": 2}
    assert report.text_grounding.added_from_head == ["Pleural Effusion"]
    verdict = review_report(report, out, ReportRequest(), image=PA)
    assert (verdict.hallucinations, verdict.omissions, verdict.laterality_conflicts) == ([], [], [])


def test_text_that_contradicts_the_head_or_speaks_of_what_is_not_assessed_is_dropped() -> None:
    out = model_output({"Pneumonia": 0.93}, not_assessed=set(ABNORMAL_LABELS) - {"Pneumonia"},
                       text="The lungs are free of focal airspace disease. No pneumothorax or effusion. "
                            "Degenerative changes are present in the spine. In the interval the right lung "
                            "remains clear. IMPRESSION: No evidence of active disease.")
    report = render(out)
    body = report.findings_text.splitlines()[0]
    assert body == "Pneumonia (confidence 0.93)."
    assert report.impression == "Pneumonia."
    assert report.text_grounding.kept_sentences == 0
    assert report.text_grounding.dropped_sentences == 5
    verdict = review_report(report, out, ReportRequest(), image=PA)
    assert (verdict.hallucinations, verdict.omissions, verdict.unsupported) == ([], [], [])


def test_supported_generated_sentences_are_kept_and_a_normal_impression_stays_when_the_head_agrees() -> None:
    out = model_output({}, not_assessed=set(ABNORMAL_LABELS) - {"Pneumonia"},
                       text="No findings of pneumonia. Heart size is normal. 1.\nIMPRESSION: No pneumonia.")
    report = render(out)
    assert report.findings_text.splitlines()[0] == "No findings of pneumonia."
    assert report.impression == "No pneumonia."
    assert report.text_grounding.dropped_by_reason == {"unassessed": 1}


def test_split_model_text() -> None:
    assert split_model_text("Findings: A.\nImpression: B.") == ("A.", "B.")
    assert split_model_text("A. B.") == ("A. B.", None)
    assert split_model_text("A.\nIMPRESSION:\n") == ("A.", None)


@pytest.mark.parametrize("template", sorted(available_templates()))
@pytest.mark.parametrize("label", ABNORMAL_LABELS)
def test_every_template_reads_back_as_what_the_head_saw(template: str, label: str) -> None:
    """QA re-reads the text with the labeler: template wording must not create disagreements."""
    out = model_output({label: 0.93}, not_assessed={"Fracture"} if label != "Fracture" else {"Lung Lesion"},
                       boxes={label: [100, 300, 400, 700]})
    report = render(out, template)
    verdict = review_report(report, out, ReportRequest(report_template=template), image=PA)
    assert verdict.hallucinations == [], report.findings_text
    assert verdict.omissions == [], report.findings_text
    assert verdict.laterality_conflicts == []
    expected_critical = [label] if label in CRITICAL_LABELS else []
    assert verdict.critical == expected_critical, report.findings_text


@pytest.mark.parametrize("template", sorted(available_templates()))
def test_all_positive_and_all_negative_read_back_consistently(template: str) -> None:
    for probs in ({label: 0.9 for label in ABNORMAL_LABELS}, {}):
        out = model_output(probs)
        report = render(out, template)
        verdict = review_report(report, out, ReportRequest(report_template=template), image=PA)
        assert (verdict.hallucinations, verdict.omissions) == ([], []), report.findings_text


def test_document_text_lays_out_the_whole_report() -> None:
    report = render(model_output({"Pneumothorax": 0.97}), "standard")
    report = report.model_copy(update={"requires_radiologist_review": True,
                                       "review_reasons": ["critical finding: Pneumothorax (detection head)"]})
    text = document_text(report, "XR Chest Single view")
    assert text.startswith("CHEST RADIOGRAPH - PRELIMINARY AI DRAFT\nEXAMINATION: XR Chest Single view\n\nFINDINGS:\n")
    assert "IMPRESSION:\nPneumothorax.\n" in text
    assert "Flagged for radiologist review before use: critical finding: Pneumothorax (detection head)." in text
    assert "Drafted by model 1.0.0" in text
    assert report.template == "standard"


def test_every_assessed_observation_is_visible_with_probability_and_threshold() -> None:
    out = model_output({"Pneumonia": 0.62, "Pleural Effusion": 0.91}, not_assessed={"Fracture", "Edema"},
                       boxes={"Pleural Effusion": [80, 500, 420, 900], "Pneumonia": [600, 100, 900, 400]},
                       threshold=0.7)
    report = render_report("j", "s", out, ReportRequest(), image=ImageInfo(width=1000, view=View.PA))
    obs = {o.label: o for o in report.observations}
    assert "Fracture" not in obs and "Edema" not in obs and "No Finding" not in obs
    assert len(obs) == 11  # 13 abnormal labels less the two not assessed
    assert obs["Pleural Effusion"].present and obs["Pleural Effusion"].is_critical
    assert obs["Pleural Effusion"].bounding_box == [80, 500, 420, 900]
    # a negative keeps its probability and threshold, and no box even where the map had one
    assert (obs["Pneumonia"].probability, obs["Pneumonia"].threshold, obs["Pneumonia"].present) == (0.62, 0.7, False)
    assert obs["Pneumonia"].bounding_box is None
    assert [f.label for f in report.findings] == ["Pleural Effusion"]


def test_observations_are_in_chexpert_order_rounded_and_present_at_the_threshold() -> None:
    out = model_output({"Cardiomegaly": 0.7, "Atelectasis": 0.699999, "Edema": 0.123456}, threshold=0.7)
    report = render_report("j", "s", out, ReportRequest())
    assert [o.label for o in report.observations] == list(ABNORMAL_LABELS)
    obs = {o.label: o for o in report.observations}
    assert obs["Cardiomegaly"].present  # probability == threshold is the head's positive call (>=)
    # rounded like findings' confidence, but the call is made on the unrounded probability
    assert (obs["Atelectasis"].probability, obs["Atelectasis"].present) == (0.7, False)
    assert obs["Edema"].probability == 0.1235
    assert {f.label for f in report.findings} == {o.label for o in report.observations if o.present}
