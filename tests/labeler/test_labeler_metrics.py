"""clinical_efficacy: counts, averages and the uncertain policy."""

from __future__ import annotations

import pytest

from libs.labeler.metrics import clinical_efficacy, score_label_sets


def test_identical_reports_score_one():
    reports = ["Small left pleural effusion.", "Cardiomegaly. No pneumothorax.", "No acute disease."]
    scores = clinical_efficacy(reports, reports)
    assert scores["micro"]["f1"] == 1.0
    assert scores["macro"]["f1"] == 1.0
    assert set(scores["macro_over"]) == {"Pleural Effusion", "Cardiomegaly", "No Finding"}
    assert scores["uncertain_policy"] == "negative"


def test_counts():
    generated = ["Small left pleural effusion.", "Cardiomegaly."]
    reference = ["No pleural effusion. Cardiomegaly.", "Cardiomegaly."]
    scores = clinical_efficacy(generated, reference)
    effusion = scores["per_observation"]["Pleural Effusion"]
    assert (effusion["tp"], effusion["fp"], effusion["fn"]) == (0, 1, 0)
    cardio = scores["per_observation"]["Cardiomegaly"]
    assert (cardio["tp"], cardio["fp"], cardio["fn"]) == (1, 0, 1)
    assert cardio["precision"] == 1.0 and cardio["recall"] == 0.5 and cardio["f1"] == pytest.approx(2 / 3)
    micro = scores["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (1, 1, 1)
    assert micro["f1"] == pytest.approx(0.5)
    # Only Cardiomegaly has reference positives, so the macro average is its F1.
    assert scores["macro_over"] == ["Cardiomegaly"]
    assert scores["macro"]["f1"] == pytest.approx(2 / 3)


def test_uncertain_policy():
    generated, reference = ["Possible pneumonia."], ["Right lower lobe pneumonia."]
    strict = clinical_efficacy(generated, reference)
    assert strict["per_observation"]["Pneumonia"]["fn"] == 1
    loose = clinical_efficacy(generated, reference, uncertain_positive=True)
    assert loose["per_observation"]["Pneumonia"]["tp"] == 1
    assert loose["uncertain_policy"] == "positive"


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        clinical_efficacy(["a"], [])
    with pytest.raises(ValueError):
        score_label_sets([set()], [])


def test_empty_denominators_are_zero():
    scores = score_label_sets([set()], [set()], labels=["Edema"])
    assert scores["per_observation"]["Edema"]["f1"] == 0.0
    assert scores["macro"]["f1"] == 0.0
