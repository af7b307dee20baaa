"""Mention phrases: synonyms that must be found, look-alikes that must not."""

from __future__ import annotations

import pytest

from libs.labeler import Status, label_report

from .checks import expect

POS, NEG = Status.POSITIVE, Status.NEGATIVE


@pytest.mark.parametrize(
    "text, observation, span",
    [
        ("Cardiomegaly.", "Cardiomegaly", "Cardiomegaly"),
        ("The cardiac silhouette is enlarged.", "Cardiomegaly", "cardiac silhouette is enlarged"),
        ("Enlarged heart.", "Cardiomegaly", "Enlarged heart"),
        ("Enlargement of the cardiac silhouette.", "Cardiomegaly", "Enlargement of the cardiac silhouette"),
        ("Heart size is mildly increased.", "Cardiomegaly", "Heart size is mildly increased"),
        ("Widened mediastinum.", "Enlarged Cardiomediastinum", "Widened mediastinum"),
        ("Prominence of the superior mediastinum.", "Enlarged Cardiomediastinum",
         "Prominence of the superior mediastinum"),
        ("Patchy airspace disease in the left base.", "Lung Opacity", "airspace disease"),
        ("Right lower lobe infiltrate.", "Lung Opacity", "infiltrate"),
        ("Increased interstitial markings.", "Lung Opacity", "Increased interstitial markings"),
        ("Biapical scarring.", "Lung Opacity", "scarring"),
        ("A 1 cm nodule in the right upper lobe.", "Lung Lesion", "nodule"),
        ("Right hilar mass.", "Lung Lesion", "mass"),
        ("Pulmonary vascular congestion.", "Edema", "Pulmonary vascular congestion"),
        ("Interstitial edema.", "Edema", "Interstitial edema"),
        ("Congestive heart failure.", "Edema", "Congestive heart failure"),
        ("Focal airspace consolidation in the lingula.", "Consolidation", "airspace consolidation"),
        ("Right lower lobe pneumonia.", "Pneumonia", "pneumonia"),
        ("Subsegmental atelectasis at the left base.", "Atelectasis", "atelectasis"),
        ("Collapse of the left lower lobe.", "Atelectasis", "Collapse of the left lower lobe"),
        ("Bilateral pneumothoraces.", "Pneumothorax", "pneumothoraces"),
        ("Blunting of the left costophrenic angle.", "Pleural Effusion", "Blunting of the left costophrenic angle"),
        ("The costophrenic angles are blunted.", "Pleural Effusion", "costophrenic angles are blunted"),
        ("Costophrenic angle blunting on the right.", "Pleural Effusion", "Costophrenic angle blunting"),
        ("Fluid in the minor fissure.", "Pleural Effusion", "Fluid in the minor fissure"),
        ("Apical pleural thickening.", "Pleural Other", "Apical pleural thickening"),
        ("Calcified pleural plaques.", "Pleural Other", "Calcified pleural plaques"),
        ("Healed right rib fractures.", "Fracture", "fractures"),
        ("Left chest wall pacemaker.", "Support Devices", "pacemaker"),
        ("Right internal jugular central venous catheter.", "Support Devices", "central venous catheter"),
        ("Endotracheal tube 4 cm above the carina.", "Support Devices", "Endotracheal tube"),
        ("Sternotomy wires.", "Support Devices", "Sternotomy wires"),
        ("Right chest XXXX with tip in the SVC.", "Support Devices", "tip in the SVC"),
        ("Right chest XXXX with the distal tip at the level of the mid SVC.", "Support Devices",
         "tip at the level of the mid SVC"),
        ("Slight basilar prominence of lung markings.", "Lung Opacity", "prominence of lung markings"),
        ("Prominent interstitium.", "Lung Opacity", "Prominent interstitium"),
        ("Stable prominence of the right cardiac silhouette.", "Cardiomegaly",
         "prominence of the right cardiac silhouette"),
        ("Blunting of the lateral sulci bilaterally.", "Pleural Effusion", "Blunting of the lateral sulci"),
        ("Bilateral prominent lung vascularity.", "Edema", "prominent lung vascularity"),
    ],
)
def test_mentions(text, observation, span):
    expect(text, observation, POS, [span])


def test_hydropneumothorax_is_both():
    expect("Left hydropneumothorax.", "Pneumothorax", POS, ["hydropneumothorax"], laterality="left")
    expect("Left hydropneumothorax.", "Pleural Effusion", POS, ["hydropneumothorax"], laterality="left")


def test_nodular_opacity_is_lesion_and_opacity():
    text = "Nodular opacity in the right upper lobe."
    expect(text, "Lung Lesion", POS, ["Nodular opacity"], laterality="right")
    expect(text, "Lung Opacity", POS, ["Nodular opacity"], laterality="right")


@pytest.mark.parametrize(
    "text, observation",
    [
        ("Small pericardial effusion.", "Pleural Effusion"),
        ("Lytic lesion in the right humerus.", "Lung Lesion"),
        ("Subcutaneous edema of the chest wall.", "Edema"),
        ("Evidence of prior granulomatous infection.", "Pneumonia"),
        ("Plate-like opacity.", "Support Devices"),
        ("Bilateral breast implants.", "Support Devices"),
        ("Midline trachea.", "Support Devices"),
        ("Chest tube tip outside the thoracic cavity.", "Lung Lesion"),
        ("Fractured pacemaker lead.", "Fracture"),
        ("The lateral most screw is fractured.", "Fracture"),
        ("Left central venous catheter fracture at the level of the clavicle.", "Fracture"),
    ],
)
def test_look_alikes_are_not_mentions(text, observation):
    assert label_report(text).observations[observation].status is Status.NOT_MENTIONED


def test_de_identified_angle():
    # The IU reports replace some words by XXXX, "angle" among them.
    expect("Blunting of the right costophrenic XXXX.", "Pleural Effusion", POS,
           ["Blunting of the right costophrenic XXXX"], laterality="right")


def test_broken_device_is_a_device_not_a_fracture():
    text = "Left central venous catheter fracture at the level of the clavicle."
    expect(text, "Support Devices", POS, ["central venous catheter fracture"], laterality="left")
    assert label_report(text).observations["Fracture"].status is Status.NOT_MENTIONED


@pytest.mark.parametrize(
    "text, span",
    [
        ("Enlarged cardiomediastinum.", "Enlarged cardiomediastinum"),
        ("Mildly enlarged cardiomediastinum.", "enlarged cardiomediastinum"),
        ("Widened cardiomediastinum.", "Widened cardiomediastinum"),
        ("Enlargement of the cardiomediastinum.", "Enlargement of the cardiomediastinum"),
        ("Cardiomediastinal enlargement.", "Cardiomediastinal enlargement"),
        ("Enlarged cardiomediastinal silhouette.", "Enlarged cardiomediastinal silhouette"),
        ("Enlarged cardio-mediastinal silhouette.", "Enlarged cardio-mediastinal silhouette"),
        ("Enlarged cardiomediastinal contours.", "Enlarged cardiomediastinal contours"),
        ("The cardiomediastinum is enlarged.", "cardiomediastinum is enlarged"),
    ],
)
def test_enlarged_cardiomediastinum(text, span):
    # The mediastinum is enlarged for sure; whether the heart is the enlarged part is not said.
    expect(text, "Enlarged Cardiomediastinum", POS, [span])
    expect(text, "Cardiomegaly", Status.UNCERTAIN, [span])


@pytest.mark.parametrize(
    "text, span",
    [
        ("Widened mediastinum.", "Widened mediastinum"),
        ("Enlarged mediastinum.", "Enlarged mediastinum"),
        ("Mediastinal widening.", "Mediastinal widening"),
        ("Widening of the mediastinum.", "Widening of the mediastinum"),
        ("The mediastinum is widened.", "mediastinum is widened"),
    ],
)
def test_widened_mediastinum_is_not_cardiomegaly(text, span):
    expect(text, "Enlarged Cardiomediastinum", POS, [span])
    assert label_report(text).observations["Cardiomegaly"].status is Status.NOT_MENTIONED


@pytest.mark.parametrize(
    "text, span",
    [
        ("No enlarged cardiomediastinum.", "enlarged cardiomediastinum"),
        ("Normal cardiomediastinum.", "Normal cardiomediastinum"),
    ],
)
def test_enlarged_cardiomediastinum_denied(text, span):
    expect(text, "Enlarged Cardiomediastinum", NEG, [span])
    expect(text, "Cardiomegaly", NEG, [span])
