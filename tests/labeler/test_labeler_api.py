"""The public API others depend on: names, types, ordering, JSON form, No Finding, batch."""

from __future__ import annotations

import json

import pytest

from libs.domain.labels import CHEXPERT_LABELS
from libs.labeler import LabelerResult, ObservationLabel, Span, Status, label_report, label_reports
from libs.labeler.sentences import split_sentences

TEXT = ("Heart size is mildly enlarged. Small left pleural effusion. No pneumothorax. "
        "Possible right lower lobe pneumonia. Left subclavian central venous catheter.")


def test_result_shape():
    result = label_report(TEXT)
    assert isinstance(result, LabelerResult)
    assert list(result.observations) == list(CHEXPERT_LABELS)
    assert all(isinstance(label, ObservationLabel) for label in result.observations.values())
    assert {s.value for s in Status} == {"positive", "negative", "uncertain", "not_mentioned"}
    for label in result.observations.values():
        assert isinstance(label.status, Status)
        for span in label.spans:
            assert isinstance(span, Span) and isinstance(span, tuple)
            start, end, text = span
            assert TEXT[start:end] == text
        assert label.laterality in (None, "left", "right", "bilateral")
        assert label.severity in (None, "mild", "moderate", "severe")


def test_positive_labels_and_statuses():
    result = label_report(TEXT)
    assert result.positive_labels() == {"Cardiomegaly", "Pleural Effusion", "Support Devices"}
    assert result.observations["Pneumonia"].status is Status.UNCERTAIN
    assert result.observations["Pneumothorax"].status is Status.NEGATIVE
    assert result.observations["Edema"].status is Status.NOT_MENTIONED
    assert result.observations["No Finding"].status is Status.NEGATIVE


def test_to_dict_is_json():
    data = json.loads(json.dumps(label_report(TEXT).to_dict()))
    assert list(data["observations"]) == list(CHEXPERT_LABELS)
    effusion = data["observations"]["Pleural Effusion"]
    assert effusion["status"] == "positive"
    assert effusion["laterality"] == "left" and effusion["severity"] == "mild"
    start, end, text = effusion["spans"][0]
    assert TEXT[start:end] == text == "pleural effusion"
    assert data["positive"] == ["Cardiomegaly", "Pleural Effusion", "Support Devices"]
    assert data["uncertain"] == ["Pneumonia"]


def test_batch_equals_single():
    texts = [TEXT, "No acute cardiopulmonary abnormality.", ""]
    assert [r.to_dict() for r in label_reports(texts)] == [label_report(t).to_dict() for t in texts]
    assert [r.to_dict() for r in label_reports(iter(texts))] == [label_report(t).to_dict() for t in texts]


def test_vector():
    result = label_report(TEXT)
    vector = result.vector(uncertain=0.5)
    assert vector[CHEXPERT_LABELS.index("Pleural Effusion")] == 1.0
    assert vector[CHEXPERT_LABELS.index("Pneumonia")] == 0.5
    assert vector[CHEXPERT_LABELS.index("Pneumothorax")] == 0.0


@pytest.mark.parametrize(
    "text, status, spans",
    [
        ("No acute cardiopulmonary abnormality.", Status.POSITIVE, ["No acute cardiopulmonary abnormality"]),
        ("Heart size is normal. Lungs are clear.", Status.POSITIVE, []),
        ("Left chest wall pacemaker. Lungs are clear.", Status.POSITIVE, []),  # devices do not count
        ("Calcified granuloma. Degenerative changes of the spine.", Status.POSITIVE, []),  # outside the 14
        ("Possible pneumonia.", Status.NEGATIVE, []),  # uncertain counts
        ("Small left pleural effusion.", Status.NEGATIVE, []),
        ("", Status.NOT_MENTIONED, []),
        ("   \n", Status.NOT_MENTIONED, []),
    ],
)
def test_no_finding_rule(text, status, spans):
    label = label_report(text).observations["No Finding"]
    assert label.status is status
    assert [s.text for s in label.spans] == spans


def test_offsets_survive_unusual_characters():
    text = "İ note: small left pleural effusion."
    span = label_report(text).observations["Pleural Effusion"].spans[0]
    assert text[span.start:span.end] == span.text == "pleural effusion"


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("No effusion. Small nodule.", ["No effusion.", "Small nodule."]),
        ("A 1.5 cm nodule. No effusion.", ["A 1.5 cm nodule.", "No effusion."]),
        ("Atelectasis vs. pneumonia. Clear.", ["Atelectasis vs. pneumonia.", "Clear."]),
        ("No effusion\nSmall nodule", ["No effusion", "Small nodule"]),
        ("1. No effusion. 2. Nodule.", ["1.", "No effusion.", "2.", "Nodule."]),
    ],
)
def test_sentences(text, sentences):
    assert [text[a:b] for a, b in split_sentences(text)] == sentences


def test_negation_does_not_cross_sentences():
    result = label_report("No pneumothorax.\nPleural effusion on the right")
    assert result.observations["Pleural Effusion"].status is Status.POSITIVE
