"""Structured reports: "<observation>: <value>" pairs, section headings, and "<subject>: <predicate>"."""

from __future__ import annotations

import pytest

from libs.labeler import Status, label_report

from .checks import expect

POS, NEG, UNC, NOT = Status.POSITIVE, Status.NEGATIVE, Status.UNCERTAIN, Status.NOT_MENTIONED


def _cues(result, observation):
    return [c.text for c in result.observations[observation].cues]


@pytest.mark.parametrize(
    "text, observation, status, span, cue",
    [
        ("Pneumothorax: absent.", "Pneumothorax", NEG, "Pneumothorax", "absent"),
        ("Effusion: none.", "Pleural Effusion", NEG, "Effusion", "none"),
        ("Pneumothorax: not seen.", "Pneumothorax", NEG, "Pneumothorax", "not seen"),
        ("Cardiomegaly: no.", "Cardiomegaly", NEG, "Cardiomegaly", "no"),
        ("Pneumothorax: negative", "Pneumothorax", NEG, "Pneumothorax", "negative"),
        ("Pneumothorax: NEGATIVE.", "Pneumothorax", NEG, "Pneumothorax", "NEGATIVE"),
        ("Pneumothorax: nil.", "Pneumothorax", NEG, "Pneumothorax", "nil"),
        ("Pleural effusion: none seen on this study.", "Pleural Effusion", NEG, "Pleural effusion", "none seen"),
        ("Pneumothorax: not identified.", "Pneumothorax", NEG, "Pneumothorax", "not identified"),
        ("Pneumothorax: resolved.", "Pneumothorax", NEG, "Pneumothorax", "resolved"),
        ("Pneumothorax: present", "Pneumothorax", POS, "Pneumothorax", "present"),
        ("Pneumothorax: yes", "Pneumothorax", POS, "Pneumothorax", "yes"),
        ("Pneumothorax: positive.", "Pneumothorax", POS, "Pneumothorax", "positive"),
        ("Pneumothorax: possible", "Pneumothorax", UNC, "Pneumothorax", "possible"),
        ("Pneumonia: likely.", "Pneumonia", UNC, "Pneumonia", "likely"),
        ("Pneumothorax: cannot be excluded.", "Pneumothorax", UNC, "Pneumothorax", "cannot be excluded"),
        ("Pneumothorax: ?", "Pneumothorax", UNC, "Pneumothorax", "?"),
        ("Cardiomegaly: borderline.", "Cardiomegaly", UNC, "Cardiomegaly", "borderline"),
    ],
)
def test_value_decides_the_heading(text, observation, status, span, cue):
    result = expect(text, observation, status, [span])
    assert _cues(result, observation) == [cue]


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("Pleural effusion: small left.", "Pleural Effusion", "Pleural effusion"),
        ("Pneumothorax: no change.", "Pneumothorax", "Pneumothorax"),  # a pseudo-negation is no value
        ("Pneumothorax: no tension.", "Pneumothorax", "Pneumothorax"),  # "no" must be the whole value
        ("Pneumothorax: negative for tension.", "Pneumothorax", "Pneumothorax"),
        ("Pneumothorax: small left apical, no tension.", "Pneumothorax", "Pneumothorax"),
    ],
)
def test_a_value_that_is_not_a_status_leaves_the_heading_positive(text, observation, span):
    result = expect(text, observation, POS, [span])
    assert _cues(result, observation) == []


@pytest.mark.parametrize("separator", ["; ", ", ", "\n"])
def test_several_pairs_on_a_line(separator):
    text = f"Pneumothorax: none{separator}effusion: small left{separator}cardiomegaly: yes."
    expect(text, "Pneumothorax", NEG, ["Pneumothorax"])
    expect(text, "Pleural Effusion", POS, ["effusion"])
    expect(text, "Cardiomegaly", POS, ["cardiomegaly"])


def test_a_previous_pairs_negation_does_not_reach_the_next_heading():
    text = "Pneumothorax: no, effusion: small."
    expect(text, "Pneumothorax", NEG, ["Pneumothorax"])
    result = expect(text, "Pleural Effusion", POS, ["effusion"])
    assert _cues(result, "Pleural Effusion") == []


def test_a_heading_can_list_observations():
    text = "Pneumothorax, pleural effusion or consolidation: none."
    for observation, span in (("Pneumothorax", "Pneumothorax"), ("Pleural Effusion", "pleural effusion"),
                              ("Consolidation", "consolidation")):
        expect(text, observation, NEG, [span])


def test_a_value_that_names_another_finding_is_that_findings_statement():
    text = "Atelectasis: possible superimposed pneumonia."
    expect(text, "Atelectasis", POS, ["Atelectasis"])
    expect(text, "Pneumonia", UNC, ["pneumonia"])


@pytest.mark.parametrize(
    "text, observation, status, span",
    [
        ("Effusion: no pleural effusion.", "Pleural Effusion", NEG, "pleural effusion"),
        ("Effusion: small left pleural effusion.", "Pleural Effusion", POS, "pleural effusion"),
        ("Cardiomegaly: heart size is normal.", "Cardiomegaly", NEG, "heart size is normal"),
        ("Devices: right PICC.", "Support Devices", POS, "PICC"),
        ("Devices: left chest tube removed.", "Support Devices", NEG, "chest tube"),
    ],
)
def test_text_naming_the_headings_observation_decides(text, observation, status, span):
    expect(text, observation, status, [span])


@pytest.mark.parametrize(
    "text, span, cue",
    [
        ("Devices: none.", "Devices", "none"),
        ("Support devices: none.", "Support devices", "none"),
        ("Lines and tubes: none.", "Lines and tubes", "none"),
        ("Lines/tubes: none.", "Lines/tubes", "none"),
        ("Tubes and lines: absent.", "Tubes and lines", "absent"),
        ("Lines and tubes:\nNone.", "Lines and tubes", "None"),
    ],
)
def test_device_section_heading_with_none_is_negative(text, span, cue):
    result = expect(text, "Support Devices", NEG, [span])
    assert _cues(result, "Support Devices") == [cue]


def test_device_section_heading_introduces_its_devices():
    text = "Lines and tubes:\nRight PICC with tip in the SVC."
    expect(text, "Support Devices", POS, ["PICC", "tip in the SVC"])
    text = "Lines and tubes: ET tube 4 cm above the carina; NG tube in the stomach."
    expect(text, "Support Devices", POS, ["ET tube", "NG tube"])


def test_lines_and_tubes_in_running_text_is_a_device_mention():
    expect("Lines and tubes are in unchanged position.", "Support Devices", POS, ["Lines and tubes"])


@pytest.mark.parametrize(
    "text, observation, status, span",
    [
        ("Heart size: normal.", "Cardiomegaly", NEG, "Heart size: normal"),
        ("Heart: normal size.", "Cardiomegaly", NEG, "Heart: normal size"),
        ("Heart: enlarged.", "Cardiomegaly", POS, "Heart: enlarged"),
        ("Heart size: borderline.", "Cardiomegaly", UNC, "Heart size: borderline"),
        ("Mediastinum: widened.", "Enlarged Cardiomediastinum", POS, "Mediastinum: widened"),
        ("Cardiomediastinal silhouette: normal.", "Enlarged Cardiomediastinum", NEG,
         "Cardiomediastinal silhouette: normal"),
        ("Cardiomediastinum: enlarged.", "Enlarged Cardiomediastinum", POS, "Cardiomediastinum: enlarged"),
        ("Lungs: clear.", "Lung Opacity", NEG, "Lungs: clear"),
        ("Costophrenic angles: sharp.", "Pleural Effusion", NEG, "Costophrenic angles: sharp"),
        ("Pulmonary vascularity: normal.", "Edema", NEG, "Pulmonary vascularity: normal"),
    ],
)
def test_subject_and_predicate_with_a_colon(text, observation, status, span):
    expect(text, observation, status, [span])


def test_colon_form_needs_the_predicate_to_be_the_whole_value():
    # The project's structured template: a region heading, then its sentences.
    text = "Heart and mediastinum: Widened mediastinum (confidence 0.80). The heart size is normal."
    expect(text, "Enlarged Cardiomediastinum", POS, ["Widened mediastinum"])
    expect(text, "Cardiomegaly", NEG, ["heart size is normal"])


@pytest.mark.parametrize(
    "text, observation, status, span",
    [
        ("Chest: The heart is enlarged.", "Cardiomegaly", POS, "heart is enlarged"),
        ("Right shoulder: Negative for fracture or dislocation.", "Fracture", NEG, "fracture"),
        ("Lungs: No focal consolidation.", "Consolidation", NEG, "consolidation"),
        ("At 10:30 a small pneumothorax was noted.", "Pneumothorax", POS, "pneumothorax"),
    ],
)
def test_colons_that_are_not_observation_headings(text, observation, status, span):
    expect(text, observation, status, [span])


def test_observations_not_in_a_heading_are_untouched():
    result = label_report("Pneumothorax: none. Small left pleural effusion.")
    assert result.status("Pneumothorax") is NEG
    assert result.status("Pleural Effusion") is POS
    assert result.status("Cardiomegaly") is NOT
