"""Negation: every cue kind we support, its scope, and where the scope must stop."""

from __future__ import annotations

import pytest

from libs.labeler import Status

from .checks import expect

NEG, POS = Status.NEGATIVE, Status.POSITIVE


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("No pneumothorax.", "Pneumothorax", "pneumothorax"),
        ("There is no pleural effusion.", "Pleural Effusion", "pleural effusion"),
        ("Negative for pneumothorax.", "Pneumothorax", "pneumothorax"),
        ("No evidence of pneumothorax.", "Pneumothorax", "pneumothorax"),
        ("Lungs are clear without focal consolidation.", "Consolidation", "consolidation"),
        ("The lungs are clear of focal consolidation.", "Consolidation", "consolidation"),
        ("The chest is free of pneumothorax.", "Pneumothorax", "pneumothorax"),
        ("Absence of pleural effusion.", "Pleural Effusion", "pleural effusion"),
        ("No definite pneumothorax.", "Pneumothorax", "pneumothorax"),
        ("No acute fracture.", "Fracture", "fracture"),
        ("Cardiomegaly without pulmonary edema.", "Edema", "pulmonary edema"),
        ("There are no nodules or masses.", "Lung Lesion", "nodules"),
    ],
)
def test_pre_negation(text, observation, span):
    result = expect(text, observation, NEG)
    assert span in [s.text for s in result.observations[observation].spans]


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("Pneumothorax is not seen.", "Pneumothorax", "Pneumothorax"),
        ("Pleural effusion is not identified.", "Pleural Effusion", "Pleural effusion"),
        ("The nodule is no longer visualized.", "Lung Lesion", "nodule"),
        ("The previously noted nodule is not well-seen today.", "Lung Lesion", "nodule"),
        ("The right pleural effusion has resolved.", "Pleural Effusion", "pleural effusion"),
        ("The left lower lobe consolidation has cleared.", "Consolidation", "consolidation"),
        ("The endotracheal tube has been removed.", "Support Devices", "endotracheal tube"),
        ("Pneumothorax is absent.", "Pneumothorax", "Pneumothorax"),
    ],
)
def test_post_negation(text, observation, span):
    expect(text, observation, NEG, [span])


def test_post_negation_covers_a_list():
    text = "Pneumothorax and pleural effusion are not identified."
    expect(text, "Pneumothorax", NEG, ["Pneumothorax"])
    expect(text, "Pleural Effusion", NEG, ["pleural effusion"])


def test_post_negation_covers_a_comma_list():
    text = "Consolidation, atelectasis, and effusion have cleared in the interval."
    for observation, span in (("Consolidation", "Consolidation"), ("Atelectasis", "atelectasis"),
                              ("Pleural Effusion", "effusion")):
        expect(text, observation, NEG, [span])


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("Resolved right lower lobe pneumonia.", "Pneumonia", "pneumonia"),
        ("Interval resolution of the left pleural effusion.", "Pleural Effusion", "pleural effusion"),
        ("Interval removal of the right internal jugular catheter.", "Support Devices", "jugular catheter"),
    ],
)
def test_resolution_and_removal_before_the_finding(text, observation, span):
    expect(text, observation, NEG, [span])


def test_negation_spreads_over_or_list():
    text = "No pneumothorax or pleural effusion."
    expect(text, "Pneumothorax", NEG, ["pneumothorax"])
    expect(text, "Pleural Effusion", NEG, ["pleural effusion"])


def test_negation_spreads_over_comma_list_with_size_word_before_or():
    text = "No focal consolidation, large pleural effusion, or pneumothorax is identified."
    expect(text, "Consolidation", NEG, ["consolidation"])
    expect(text, "Pleural Effusion", NEG, ["pleural effusion"])
    expect(text, "Pneumothorax", NEG, ["pneumothorax"])


def test_negation_spreads_over_comma_list_without_or():
    text = "There is no pneumothorax, pleural effusion, focal airspace consolidation."
    expect(text, "Consolidation", NEG, ["airspace consolidation"])


@pytest.mark.parametrize(
    "text",
    [
        "No pneumothorax, but there is a small left pleural effusion.",
        "No pneumothorax, small left pleural effusion.",
        "No pneumothorax; small left pleural effusion.",
        "No pneumothorax. Small left pleural effusion.",
        "No pneumothorax is seen and a small left pleural effusion is present.",
    ],
)
def test_negation_scope_stops(text):
    expect(text, "Pneumothorax", NEG, ["pneumothorax"])
    expect(text, "Pleural Effusion", POS, ["pleural effusion"], laterality="left", severity="mild")


def test_negation_does_not_reach_a_clause_with_its_own_verb():
    text = "No pneumothorax, the heart is enlarged."
    expect(text, "Cardiomegaly", POS, ["heart is enlarged"])


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("No change in the small left pleural effusion.", "Pleural Effusion", "pleural effusion"),
        ("No significant interval change in cardiomegaly.", "Cardiomegaly", "cardiomegaly"),
        ("No increase in the right pneumothorax.", "Pneumothorax", "pneumothorax"),
    ],
)
def test_pseudo_negation_keeps_the_finding(text, observation, span):
    expect(text, observation, POS, [span])


@pytest.mark.parametrize(
    "text",
    ["No findings to suggest pneumonia.", "No focal opacity suggestive of pneumonia.",
     "There is no focal air space opacity to suggest a pneumonia."],
)
def test_negation_governs_a_later_weak_uncertainty_cue(text):
    expect(text, "Pneumonia", NEG, ["pneumonia"])


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("Heart size is normal.", "Cardiomegaly", "Heart size is normal"),
        ("The heart is normal in size.", "Cardiomegaly", "heart is normal"),
        ("The heart is not enlarged.", "Cardiomegaly", "heart is not enlarged"),
        ("Normal heart size.", "Cardiomegaly", "Normal heart size"),
        ("The cardiac silhouette is within normal limits.", "Cardiomegaly",
         "cardiac silhouette is within normal limits"),
        ("Heart size is at the upper limits of normal.", "Cardiomegaly", "Heart size is at the upper limits of normal"),
        ("The mediastinum is unremarkable.", "Enlarged Cardiomediastinum", "mediastinum is unremarkable"),
        ("There is no mediastinal widening.", "Enlarged Cardiomediastinum", "mediastinal widening"),
        ("The lungs are clear.", "Lung Opacity", "lungs are clear"),
        ("Clear lungs.", "Lung Opacity", "Clear lungs"),
        ("The costophrenic angles are sharp.", "Pleural Effusion", "costophrenic angles are sharp"),
        ("Pulmonary vascularity is normal.", "Edema", "Pulmonary vascularity is normal"),
    ],
)
def test_normal_statements_are_negative(text, observation, span):
    expect(text, observation, NEG, [span])


def test_cardiomediastinal_silhouette_normal_denies_both():
    text = "The cardiomediastinal silhouette is within normal limits."
    span = ["cardiomediastinal silhouette is within normal limits"]
    expect(text, "Enlarged Cardiomediastinum", NEG, span)
    expect(text, "Cardiomegaly", NEG, span)


def test_negation_cue_is_reported():
    result = expect("No pneumothorax.", "Pneumothorax", NEG)
    assert [c.text for c in result.observations["Pneumothorax"].cues] == ["No"]
