""""Not assessed" says nothing about presence: the observation is not mentioned (no span, no cue)."""

from __future__ import annotations

import pytest

from libs.labeler import Status, label_report

from .checks import expect

POS, NEG, NOT = Status.POSITIVE, Status.NEGATIVE, Status.NOT_MENTIONED


@pytest.mark.parametrize(
    "text, observation",
    [
        ("Fracture: not assessed.", "Fracture"),
        ("Pneumothorax: not evaluated.", "Pneumothorax"),
        ("Pneumothorax: cannot be assessed.", "Pneumothorax"),
        ("Fracture: n/a.", "Fracture"),
        ("Fracture not assessed.", "Fracture"),
        ("Fractures are not evaluated.", "Fracture"),
        ("Fractures cannot be assessed.", "Fracture"),
        ("Pneumothorax could not be evaluated on this supine view.", "Pneumothorax"),
        ("The rib fractures are not well evaluated.", "Fracture"),
        ("Unable to assess for pneumothorax.", "Pneumothorax"),
    ],
)
def test_not_assessed_is_not_mentioned(text, observation):
    result = expect(text, observation, NOT, [])
    assert result.observations[observation].cues == []


@pytest.mark.parametrize(
    "text",
    [
        "Not assessed: cardiomegaly, fracture.",
        "Not assessed by this model: cardiomegaly, fracture.",
        "Not assessed by this model (neither present nor absent): cardiomegaly, fracture.",
    ],
)
def test_not_assessed_list(text):
    # The project's report templates list the observations a model does not assess this way.
    expect(text, "Cardiomegaly", NOT, [])
    expect(text, "Fracture", NOT, [])


def test_not_assessed_leaves_other_statements_alone():
    text = "Pneumothorax cannot be evaluated on this view; no pleural effusion."
    expect(text, "Pneumothorax", NOT, [])
    expect(text, "Pleural Effusion", NEG, ["pleural effusion"])
    text = "Pneumothorax: not assessed, effusion: none."
    expect(text, "Pneumothorax", NOT, [])
    expect(text, "Pleural Effusion", NEG, ["effusion"])


def test_a_mention_elsewhere_still_counts():
    text = "Fracture: not assessed.\nOld healed left rib fracture."
    expect(text, "Fracture", POS, ["fracture"])
    assert label_report(text).observations["Fracture"].spans[0].start == text.rindex("fracture")


def test_not_assessed_alone_leaves_no_finding_to_the_rest():
    result = label_report("Fracture: not assessed. No acute cardiopulmonary abnormality.")
    assert result.status("No Finding") is POS
