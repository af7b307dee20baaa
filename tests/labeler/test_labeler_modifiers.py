"""Laterality and severity: which words count, how they combine, where the window stops."""

from __future__ import annotations

import pytest

from libs.labeler import Status

from .checks import expect

POS = Status.POSITIVE


@pytest.mark.parametrize(
    "text, observation, laterality, severity",
    [
        ("Small left pleural effusion.", "Pleural Effusion", "left", "mild"),
        ("Moderate right pleural effusion.", "Pleural Effusion", "right", "moderate"),
        ("Large bilateral pleural effusions.", "Pleural Effusion", "bilateral", "severe"),
        ("Trace left pleural effusion.", "Pleural Effusion", "left", "mild"),
        ("Tiny right apical pneumothorax.", "Pneumothorax", "right", "mild"),
        ("Minimal bibasilar atelectasis.", "Atelectasis", "bilateral", "mild"),
        ("Lingular atelectasis.", "Atelectasis", "left", None),
        ("Pleural effusion on the left.", "Pleural Effusion", "left", None),
        ("Pleural effusions, left greater than right.", "Pleural Effusion", None, None),
        ("Left greater than right pleural effusions.", "Pleural Effusion", "bilateral", None),
        ("Right and left pleural effusions.", "Pleural Effusion", "bilateral", None),
        ("Effusions in both lungs.", "Pleural Effusion", "bilateral", None),
        ("Extensive right upper lobe consolidation.", "Consolidation", "right", "severe"),
        ("Marked cardiomegaly.", "Cardiomegaly", None, "severe"),
        ("Massive cardiomegaly.", "Cardiomegaly", None, "severe"),
        ("Mild to moderate cardiomegaly.", "Cardiomegaly", None, "moderate"),
        ("Small to moderate left pleural effusion.", "Pleural Effusion", "left", "moderate"),
        ("Moderate to large right pleural effusion.", "Pleural Effusion", "right", "severe"),
        ("The heart is mildly enlarged.", "Cardiomegaly", None, "mild"),
        ("The heart is moderately enlarged.", "Cardiomegaly", None, "moderate"),
        ("Slight left basilar atelectasis.", "Atelectasis", "left", "mild"),
    ],
)
def test_laterality_and_severity(text, observation, laterality, severity):
    expect(text, observation, POS, laterality=laterality, severity=severity)


def test_sides_from_separate_mentions_make_bilateral():
    text = "Small left pleural effusion. Trace right pleural effusion."
    expect(text, "Pleural Effusion", POS, ["pleural effusion", "pleural effusion"], laterality="bilateral",
           severity="mild")


def test_modifiers_do_not_leak_to_the_next_finding():
    text = "Right middle lobe pneumonia and small left pleural effusion."
    expect(text, "Pneumonia", POS, ["pneumonia"], laterality="right", severity=None)
    expect(text, "Pleural Effusion", POS, ["pleural effusion"], laterality="left", severity="mild")


def test_heart_has_no_side():
    expect("Cardiomegaly with left ventricular configuration.", "Cardiomegaly", POS, laterality=None)


def test_negative_findings_carry_no_modifiers():
    result = expect("No large left pleural effusion.", "Pleural Effusion", Status.NEGATIVE)
    label = result.observations["Pleural Effusion"]
    assert label.laterality is None and label.severity is None


def test_uncertain_findings_keep_modifiers():
    expect("Possible small right pneumothorax.", "Pneumothorax", Status.UNCERTAIN, laterality="right",
           severity="mild")
