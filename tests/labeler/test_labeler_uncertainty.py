"""Uncertainty: hedges before and after a finding, alternatives, borderline sizes."""

from __future__ import annotations

import pytest

from libs.labeler import Status

from .checks import expect

UNC, POS, NEG = Status.UNCERTAIN, Status.POSITIVE, Status.NEGATIVE


@pytest.mark.parametrize(
    "text, observation, span, cue",
    [
        ("Possible right lower lobe pneumonia.", "Pneumonia", "pneumonia", "Possible"),
        ("Probable small left effusion.", "Pleural Effusion", "effusion", "Probable"),
        ("Likely atelectasis.", "Atelectasis", "atelectasis", "Likely"),
        ("Cannot exclude a small pneumothorax.", "Pneumothorax", "pneumothorax", "Cannot exclude"),
        ("Findings are suspicious for pneumonia.", "Pneumonia", "pneumonia", "suspicious for"),
        ("Findings concerning for pneumonia.", "Pneumonia", "pneumonia", "concerning for"),
        ("Question of a left rib fracture.", "Fracture", "fracture", "Question of"),
        ("Questionable small nodule in the right apex.", "Lung Lesion", "nodule", "Questionable"),
        ("Differential diagnosis includes infection.", "Pneumonia", "infection", "Differential diagnosis"),
        ("Rule out pneumonia.", "Pneumonia", "pneumonia", "Rule out"),
        ("Mild opacities bilaterally, favoring scar or atelectasis.", "Atelectasis", "atelectasis", "favoring"),
        ("Interstitial opacities which may be compatible with mild pulmonary edema.", "Edema", "pulmonary edema",
         "may"),
        ("Please note that fractures may not be demonstrated.", "Fracture", "fractures", "may not be demonstrated"),
    ],
)
def test_pre_uncertainty(text, observation, span, cue):
    result = expect(text, observation, UNC, [span])
    assert [c.text for c in result.observations[observation].cues] == [cue]


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("A small pneumothorax cannot be excluded.", "Pneumothorax", "pneumothorax"),
        ("Pneumonia is not excluded.", "Pneumonia", "Pneumonia"),
        ("Early pneumonia is possible.", "Pneumonia", "pneumonia"),
        ("Small bilateral pleural effusions suspected.", "Pleural Effusion", "pleural effusions"),
        ("Pneumonia?", "Pneumonia", "Pneumonia"),
        ("Pneumonia is in the differential.", "Pneumonia", "Pneumonia"),
        ("A superimposed pneumonia would be a consideration.", "Pneumonia", "pneumonia"),
    ],
)
def test_post_uncertainty(text, observation, span):
    expect(text, observation, UNC, [span])


def test_may_represent_hedges_the_interpretation_not_the_observation():
    text = "Left basilar opacity may represent atelectasis or pneumonia."
    expect(text, "Lung Opacity", POS, ["opacity"], laterality="left")
    expect(text, "Atelectasis", UNC, ["atelectasis"])
    expect(text, "Pneumonia", UNC, ["pneumonia"])


def test_versus_hedges_both_alternatives():
    text = "Left basilar atelectasis versus pneumonia."
    expect(text, "Atelectasis", UNC, ["atelectasis"])
    expect(text, "Pneumonia", UNC, ["pneumonia"])


@pytest.mark.parametrize(
    "text, span",
    [
        ("Borderline cardiomegaly.", "cardiomegaly"),
        ("Heart size is borderline.", "Heart size is borderline"),
        ("The heart is borderline enlarged.", "heart is borderline"),
        ("Heart size is upper limits of normal or mildly enlarged.",
         "Heart size is upper limits of normal or mildly enlarged"),
        ("The heart may be enlarged.", "heart may be enlarged"),
    ],
)
def test_borderline_heart_size_is_uncertain(text, span):
    expect(text, "Cardiomegaly", UNC, [span])


def test_enlarged_cardiomediastinal_silhouette_hedges_cardiomegaly():
    text = "The cardiomediastinal silhouette is enlarged."
    span = ["cardiomediastinal silhouette is enlarged"]
    expect(text, "Enlarged Cardiomediastinum", POS, span)
    expect(text, "Cardiomegaly", UNC, span)


def test_nearest_cue_wins():
    text = "No pneumothorax, possible small left effusion."
    expect(text, "Pneumothorax", NEG, ["pneumothorax"])
    expect(text, "Pleural Effusion", UNC, ["effusion"], laterality="left", severity="mild")


def test_positive_mention_beats_uncertain_one():
    text = "Possible pneumonia in the right base. Left lower lobe pneumonia."
    expect(text, "Pneumonia", POS, ["pneumonia"])


def test_partially_resolved_is_still_there():
    expect("COPD with almost completely resolved right apical pneumothorax.", "Pneumothorax", POS,
           ["pneumothorax"], laterality="right")
    expect("Partially resolved left lower lobe pneumonia.", "Pneumonia", POS, ["pneumonia"])
