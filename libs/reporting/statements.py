"""What a draft sentence claims, and whether the model has evidence for the claim.

One sentence at a time, read with the project's labeler, checked against what the bundle measured
for the study. Used twice, on purpose with the same rules: libs.reporting.grounding drops the
sentences of a generated draft that fail, and the evaluation's context-robustness suite
(libs.model.robustness) counts failures in finished reports. A sentence fails for one of these reasons:

- unassessed: it states something (present, possible OR absent) about an observation the bundle does
  not assess. "No pneumothorax" from a model that cannot see a pneumothorax reassures falsely.
- global_normal: "no acute disease", "lungs are clear" and the like claim normality of everything,
  while the bundle assesses only some observations, or while it found something.
- outside: it mentions none of the 14 observations ("degenerative changes of the spine", "the
  osseous structures are unremarkable") and the text was not written from the image: a decoder that
  reads only the findings list and the context has no evidence for it.
- contradicts_head: it states an assessed observation present or possible that the detection head
  calls negative, or absent where the head calls it positive.
- location: it places a head-positive finding (side, lobe, zone) where the model has no focal box, or
  on the other side than the box. Lobes and zones are never supported: a box gives a side only.
- interval: comparison language ("unchanged", "in the interval", "new", "resolved"...). No bundle is
  given a prior study's images, so it cannot compare, with or without prior dates in the context.
- age: wording that does not fit the patient's age (degenerative spine, atherosclerosis or
  emphysema in a child; "elderly" or "postmenopausal" below 40).

Limits: the rules are as good as the labeler's reading (docs/labeler.md) and these word lists; a
claim phrased in words neither knows passes. QA re-reads every finished report independently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from libs.domain.labels import ABNORMAL_LABELS

Problem = Literal["unassessed", "global_normal", "outside", "contradicts_head", "location", "interval", "age"]
PROBLEMS: tuple[Problem, ...] = ("unassessed", "global_normal", "outside", "contradicts_head", "location", "interval",
                                 "age")

# The template's own normal impression names its scope, so it is not a global claim.
_SCOPED = re.compile(r"\b(?:observations? (?:this|the) model assesses|assessed by this model)\b", re.I)

# Normality of the whole chest or of a whole organ, without naming an observation.
_GLOBAL_NORMAL = re.compile(
    r"\b(?:no (?:(?:acute|active|significant|radiographic|evidence of|signs? of)\s+){0,3}"
    r"(?:cardiopulmonary|cardiac|pulmonary|intrathoracic|chest|radiographic|thoracic|lung)?\s*"
    r"(?:disease|abnormalit(?:y|ies)|process|findings?|pathology|change)"
    r"|normal (?:chest|study|exam\w*|radiograph\w*)|unremarkable (?:chest|study|exam\w*|radiograph\w*)"
    r"|negative (?:chest|study|exam\w*)|lungs? (?:is|are|remains?|appears?) (?:\w+ )?clear"
    r"|clear lungs?|lungs? (?:is|are) (?:\w+ )?(?:free of|without)|(?:is|are) within normal limits"
    r"|(?:is|are) (?:\w+ )?(?:normal|unremarkable)\b)", re.I)

# Lobes, zones and other places a box cannot tell (a box gives a side, nothing finer).
_LOCATION = re.compile(
    r"\b(?:upper|middle|lower|mid)[- ]?(?:lobes?|lung|zones?|fields?)\b|\blingula\w*|\bbas(?:e|es|al|ilar)\b"
    r"|\bapex|\bapices|\bapical\b|\bperihilar\b|\bhil(?:um|ar)\b|\bretrocardiac\b|\bsubpleural\b|\bcostophrenic\b"
    r"|\bsuprahilar\b|\binfrahilar\b", re.I)

_INTERVAL = re.compile(
    r"\b(?:interval\w*|unchanged|stable|again (?:seen|noted|demonstrated)|redemonstrat\w*|remains?|remained"
    r"|persist\w*|previous\w*|prior|compar\w+|since|new|newly|improv\w*|worsen\w*|resolv\w*|resolution"
    r"|progress\w*|increas\w*|decreas\w*|no (?:significant )?change|changed|re-?expan\w*|recurren\w*)\b", re.I)

# Findings of old age, stated of a child. Lists are deliberately short: each term is rare in children.
_NOT_IN_CHILDREN = re.compile(
    r"\b(?:degenerat\w*|spondylo\w*|osteophyt\w*|arthrit\w*|arthropath\w*|osteoarthr\w*|atheroscler\w*"
    r"|(?:aortic|vascular|arterial) calcification\w*|calcified aort\w*|tortu\w*|ectatic|emphysema\w*|copd"
    r"|chronic obstructive|osteopeni\w*|osteoporo\w*|kyphoplast\w*|senile|elderly|postmenopausal|age[- ]related)\b",
    re.I)
_NOT_BEFORE_40 = re.compile(r"\b(?:elderly|senile|postmenopausal|age[- ]related)\b", re.I)
CHILD_MAX_AGE = 17


@dataclass
class SentenceCheck:
    text: str
    start: int
    end: int
    stated: dict[str, str] = field(default_factory=dict)  # abnormal label -> positive / uncertain / negative
    sides: dict[str, str | None] = field(default_factory=dict)  # abnormal label -> side the sentence gives
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Evidence:
    """What the model measured for a study, as the checks need it."""

    assessed: frozenset[str]  # abnormal labels the bundle assesses
    positive: frozenset[str]  # of those, the ones the head calls positive
    box_sides: dict[str, str | None]  # head-positive label -> side of its focal box (None: no focal box)
    age: int | None = None
    text_sees_image: bool = False  # the decoder was given image tokens (manifest generation.image_tokens)

    @property
    def assesses_everything(self) -> bool:
        return set(ABNORMAL_LABELS) <= set(self.assessed)


def check_sentences(text: str, evidence: Evidence) -> list[SentenceCheck]:
    """Every sentence of `text` with what it states and the problems found (empty list = supported)."""
    from libs.labeler import label_report
    from libs.labeler.sentences import split_sentences

    out = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        reading = label_report(sentence)
        check = SentenceCheck(text=sentence, start=start, end=end)
        for label in ABNORMAL_LABELS:
            obs = reading.observations[label]
            if obs.status.value != "not_mentioned":
                check.stated[label] = obs.status.value
                check.sides[label] = obs.laterality
        check.problems = _problems(sentence, check, evidence)
        out.append(check)
    return out


def _problems(sentence: str, check: SentenceCheck, ev: Evidence) -> list[Problem]:
    problems: list[Problem] = []
    stated = check.stated
    if any(label not in ev.assessed for label in stated):
        problems.append("unassessed")
    scoped = bool(_SCOPED.search(sentence))
    if not stated and _GLOBAL_NORMAL.search(sentence) and not scoped:
        if ev.positive or not ev.assesses_everything:
            problems.append("global_normal")
    elif scoped and ev.positive:
        problems.append("global_normal")  # "nothing among what the model assesses" while it found something
    if not stated and not _GLOBAL_NORMAL.search(sentence) and not scoped and not ev.text_sees_image:
        problems.append("outside")
    for label, status in stated.items():
        if label not in ev.assessed:
            continue
        present = status in ("positive", "uncertain")
        if present != (label in ev.positive):
            problems.append("contradicts_head")
            break
    for label, status in stated.items():
        if label in ev.positive and status in ("positive", "uncertain"):
            side = check.sides.get(label)
            box_side = ev.box_sides.get(label)
            if _LOCATION.search(sentence) or (side is not None and side != box_side):
                problems.append("location")
                break
    if _INTERVAL.search(sentence):
        problems.append("interval")
    if ev.age is not None and (
        (ev.age <= CHILD_MAX_AGE and _NOT_IN_CHILDREN.search(sentence)) or (ev.age < 40 and _NOT_BEFORE_40.search(sentence))
    ):
        problems.append("age")
    return problems


def evidence_for(output, image=None, *, age: int | None = None, text_sees_image: bool = False) -> Evidence:
    """Evidence from a ModelOutput (boxes in source pixels) and the ImageInfo the boxes' sides need."""
    from libs.qa.laterality import box_side

    assessed = frozenset(p.label for p in output.predictions if p.assessed and p.label in ABNORMAL_LABELS)
    positives = [p for p in output.positives() if p.label in ABNORMAL_LABELS]
    return Evidence(
        assessed=assessed,
        positive=frozenset(p.label for p in positives),
        box_sides={p.label: box_side(p.bounding_box, image) for p in positives},
        age=age,
        text_sees_image=text_sees_image,
    )
