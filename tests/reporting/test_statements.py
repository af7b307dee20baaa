"""The sentence checks behind grounding and the robustness suite: each rule fires on the sentence it is
for and stays quiet on a supported one."""

from __future__ import annotations

import pytest

from libs.domain.labels import ABNORMAL_LABELS
from libs.reporting.statements import Evidence, check_sentences

PNEUMONIA_ONLY = frozenset({"Pneumonia"})


def ev(positive=(), sides=None, age=None, assessed=PNEUMONIA_ONLY, sees_image=False) -> Evidence:
    return Evidence(assessed=frozenset(assessed), positive=frozenset(positive), box_sides=sides or {},
                    age=age, text_sees_image=sees_image)


def problems(sentence: str, evidence: Evidence) -> list[str]:
    [check] = check_sentences(sentence, evidence)
    return check.problems


@pytest.mark.parametrize("sentence, evidence, expected", [
    ("No pneumothorax or pleural effusion.", ev(), ["unassessed"]),
    ("Heart size is normal.", ev(), ["unassessed"]),
    ("The lungs are clear.", ev(), ["unassessed"]),  # read as "no lung opacity": not assessed
    ("No evidence of active disease.", ev(), ["global_normal"]),
    ("No acute cardiopulmonary abnormality.", ev(assessed=ABNORMAL_LABELS), []),
    ("No acute cardiopulmonary abnormality.", ev(positive={"Pneumonia"}, assessed=ABNORMAL_LABELS), ["global_normal"]),
    ("No acute cardiopulmonary abnormality among the observations this model assesses.", ev(), []),
    ("No acute cardiopulmonary abnormality among the observations this model assesses.",
     ev(positive={"Pneumonia"}), ["global_normal"]),
    ("Degenerative changes are present in the spine.", ev(), ["outside"]),
    ("No findings of pneumonia.", ev(), []),
    ("No findings of pneumonia.", ev(positive={"Pneumonia"}), ["contradicts_head"]),
    ("Findings consistent with pneumonia.", ev(), ["contradicts_head"]),
    ("Findings consistent with pneumonia.", ev(positive={"Pneumonia"}), []),
    ("Right lower lobe pneumonia.", ev(positive={"Pneumonia"}, sides={"Pneumonia": "right"}), ["location"]),
    ("Right pneumonia.", ev(positive={"Pneumonia"}, sides={"Pneumonia": "right"}), []),
    ("Right pneumonia.", ev(positive={"Pneumonia"}, sides={"Pneumonia": "left"}), ["location"]),
    ("Right pneumonia.", ev(positive={"Pneumonia"}, sides={"Pneumonia": None}), ["location"]),
    ("Pneumonia is again seen.", ev(positive={"Pneumonia"}), ["interval"]),
    ("No new pneumonia.", ev(), ["interval"]),
])
def test_each_rule(sentence, evidence, expected) -> None:
    assert problems(sentence, evidence) == expected


def test_age_rules_depend_on_the_age() -> None:
    assessed = set(ABNORMAL_LABELS)
    spine = "Degenerative changes of the thoracic spine."
    assert "age" in problems(spine, ev(age=3, assessed=assessed, sees_image=True))
    assert "age" not in problems(spine, ev(age=67, assessed=assessed, sees_image=True))
    assert "age" in problems("Emphysema.", ev(age=8, assessed=assessed, sees_image=True))
    assert "age" in problems("Heart size is normal in this elderly patient.", ev(age=30, assessed=assessed))
    assert "age" not in problems("Heart size is normal.", ev(age=3, assessed=assessed))


def test_a_text_written_from_the_image_may_describe_what_the_head_does_not_label() -> None:
    assert problems("Degenerative changes are present in the spine.", ev(age=70, sees_image=True)) == []


def test_sentences_are_checked_one_by_one() -> None:
    checks = check_sentences("Findings consistent with pneumonia. No pneumothorax.", ev(positive={"Pneumonia"}))
    assert [c.ok for c in checks] == [True, False]
    assert checks[0].stated == {"Pneumonia": "positive"}
