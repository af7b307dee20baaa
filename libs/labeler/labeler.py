"""label_report: the 14 CheXpert observations of a free-text report, with the evidence for each.

Steps (each its own module): split sentences; find mentions (vocabulary); find negation and
uncertainty cues and clause terminators (context); give every mention a status from the nearest cue
that reaches it, or from its value when it heads a "<observation>: <value>" pair (headings); drop the
mentions that are "not assessed"; aggregate per observation the CheXpert way (positive beats
uncertain beats negative); read laterality and severity around the deciding mentions (modifiers);
derive No Finding.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from libs.domain.labels import CHEXPERT_LABELS
from libs.labeler import modifiers
from libs.labeler.context import POST_SCOPE_BREAK, Cue, CueKind, find_cues, find_terminators
from libs.labeler.headings import Heading, find_headings
from libs.labeler.sentences import split_sentences
from libs.labeler.types import LabelerResult, ObservationLabel, Span, Status
from libs.labeler.vocabulary import RULES, Polarity, compile_rules

NO_FINDING = "No Finding"
DEVICES = "Support Devices"
# Observations for which a side is meaningless (the heart and mediastinum are midline).
_NO_LATERALITY = frozenset({NO_FINDING, "Cardiomegaly", "Enlarged Cardiomediastinum"})
_NO_SEVERITY = frozenset({NO_FINDING, DEVICES})
# Statements of normality: shown as the evidence of a positive No Finding.
_NORMAL_STATEMENT = re.compile(
    r"(?<![\w])(?:no (?:acute|active|significant|evidence of|radiographic evidence of)?\s*(?:acute )?"
    r"(?:cardiopulmonary|cardiac|pulmonary|intrathoracic|chest|radiographic|thoracic|lung)?\s*"
    r"(?:disease|abnormalit(?:y|ies)|process|findings?|pathology|change)|normal (?:chest|study|exam\w*|radiograph\w*)"
    r"(?: x-?\w+)?|unremarkable (?:chest|study|exam\w*|radiograph\w*)|negative (?:chest|study|exam\w*))(?![\w])"
)
_MENTIONS = compile_rules(RULES)
# For each clausal rule's group name: its predicate groups that exist, and what each says.
_PREDICATES = {
    f"r{i}": [(f"r{i}_{kind}", targets) for kind, targets in (("unc", r.on_unc), ("neg", r.on_neg), ("pos", r.on_pos))
              if f"r{i}_{kind}" in _MENTIONS.groupindex]
    for i, r in enumerate(RULES) if r.clausal
}
_VERB = re.compile(r"(?<![\w])(?:is|are|was|were|be|been|appears?|appearing|remains?|seems?|looks?|measures?)(?![\w])")
_STATUS_RANK = {Status.POSITIVE: 3, Status.UNCERTAIN: 2, Status.NEGATIVE: 1, Status.NOT_MENTIONED: 0}


@dataclass(slots=True)
class Mention:
    observation: str
    polarity: Polarity
    start: int
    end: int
    clausal: bool
    rule: str
    status: Status = Status.NOT_MENTIONED
    cue: Cue | None = None


def _lower(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters ("İ") lower-case to two; keep offsets aligned by lowering one character at a time.
    return "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)


def find_mentions(lowered: str) -> list[Mention]:
    mentions: list[Mention] = []
    for match in _MENTIONS.finditer(lowered):
        rule = RULES[int(match.lastgroup[1:])]  # type: ignore[index]
        if rule.clausal:
            targets = ()
            for group, predicate_targets in _PREDICATES[match.lastgroup]:  # type: ignore[index]
                if match.group(group) is not None:
                    targets = predicate_targets
                    break
        else:
            targets = rule.targets
        # A subject + predicate without a verb ("costophrenic angle blunting", "heart size normal") is a
        # noun phrase: the cues around it apply as to any other mention.
        clausal = rule.clausal and _VERB.search(match.group()) is not None
        for observation, polarity in targets:
            mentions.append(Mention(observation, polarity, match.start(), match.end(), clausal, rule.name))
    return mentions


def _blocked(starts: list[int], lo: int, hi: int) -> bool:
    """Is there a terminator starting in [lo, hi)? (`starts`: sorted terminator starts.)"""
    i = bisect.bisect_left(starts, lo)
    return i < len(starts) and starts[i] < hi


def _resolve(mention: Mention, lowered: str, sentence: tuple[int, int], cues: list[Cue],
             term_starts: list[int]) -> None:
    """Set the mention's status and deciding cue: the nearest cue whose scope reaches it."""
    if mention.polarity is Polarity.NEGATIVE:
        mention.status = Status.NEGATIVE
        return
    s0, s1 = sentence
    best: Cue | None = None
    best_distance = 1 << 30
    governing_negation: Cue | None = None
    for cue in cues:
        if cue.end <= s0 or cue.start >= s1 or cue.kind is CueKind.PSEUDO:
            continue
        if cue.start >= mention.start and cue.end <= mention.end:
            distance = 0  # inside the mention: "heart is not enlarged", "heart may be enlarged"
        elif mention.clausal:
            continue  # a clause with its own verb ignores cues outside it
        elif cue.end <= mention.start and cue.kind.looks_forward:
            if _blocked(term_starts, cue.end, mention.start):
                continue
            distance = mention.start - cue.end
            if cue.kind.negates:
                governing_negation = cue
        elif cue.start >= mention.end and cue.kind.looks_back:
            if _blocked(term_starts, mention.end, cue.start):
                continue
            if cue.kind is not CueKind.BI_UNC and POST_SCOPE_BREAK.search(lowered, mention.end, cue.start):
                continue
            distance = cue.start - mention.end
        else:
            continue
        if distance < best_distance:
            best, best_distance = cue, distance
    if best is not None and best.kind is CueKind.WEAK_UNC and governing_negation is not None:
        best = governing_negation  # "no findings suggestive of pneumonia"
    _decide(mention, best)


def _decide(mention: Mention, cue: Cue | None) -> None:
    """The status a cue (or none) gives a mention; an "affirm" cue is as none, "not assessed" drops it."""
    mention.cue = cue
    if cue is not None and cue.kind.unassesses:
        mention.status, mention.cue = Status.NOT_MENTIONED, None
    elif mention.polarity is Polarity.NEGATIVE or (cue is not None and cue.kind.negates):
        mention.status = Status.NEGATIVE
    elif cue is None or cue.kind is CueKind.AFFIRM:
        mention.status = Status.POSITIVE if mention.polarity is Polarity.CONTEXT else Status.UNCERTAIN
    else:
        mention.status = Status.UNCERTAIN


def _apply_headings(headings: list[Heading], mentions: list[Mention], lowered: str, cues: list[Cue],
                    term_starts: list[int]) -> None:
    """Re-decide the mentions that head a "<observation>: <value>" pair (see headings.py)."""
    for heading in headings:
        if heading.unassessed_list:  # "Not assessed: cardiomegaly, fracture."
            for mention in mentions:
                if heading.colon < mention.start < heading.content_end:
                    mention.status, mention.cue = Status.NOT_MENTIONED, None
            continue
        introduced = {m.observation for m in mentions if heading.value_start <= m.start < heading.content_end}
        for mention in mentions:
            if not (heading.start <= mention.start and mention.end <= heading.colon):
                continue
            if mention.observation in introduced:  # "Devices: right PICC": the text after it decides
                mention.status, mention.cue = Status.NOT_MENTIONED, None
            elif heading.value is not None:  # "Pneumothorax: absent"
                _decide(mention, heading.value)
            else:  # "Effusion: small left": only the heading's own words count
                _resolve(mention, lowered, (heading.start, heading.colon), cues, term_starts)


def label_report(text: str) -> LabelerResult:
    """Label one report (findings + impression). Offsets in the result index into `text`."""
    text = text or ""
    lowered = _lower(text)
    sentences = split_sentences(text)
    sentence_starts = [s for s, _ in sentences]
    mentions = find_mentions(lowered)
    cues = find_cues(lowered)
    term_starts = [start for start, _ in find_terminators(lowered)]

    sentence_of: list[tuple[int, int]] = []
    for mention in mentions:
        i = max(0, bisect.bisect_right(sentence_starts, mention.start) - 1)
        sentence = sentences[i] if sentences else (0, len(text))
        sentence_of.append(sentence)
        _resolve(mention, lowered, sentence, cues, term_starts)
    headings = find_headings(lowered, sentences, cues, [m.start for m in mentions]) if mentions else []
    if headings:
        _apply_headings(headings, mentions, lowered, cues, term_starts)

    by_observation: dict[str, list[int]] = {}
    for index, mention in enumerate(mentions):
        if mention.status is not Status.NOT_MENTIONED:  # "not assessed", or a heading the text after decides
            by_observation.setdefault(mention.observation, []).append(index)
    # Neighbouring mentions bound each other's modifier windows.
    edges = sorted({(m.start, m.end) for m in mentions})

    observations: dict[str, ObservationLabel] = {}
    for name in CHEXPERT_LABELS:
        if name == NO_FINDING:
            continue
        indices = by_observation.get(name)
        if not indices:
            observations[name] = ObservationLabel()
            continue
        status = max((mentions[i].status for i in indices), key=_STATUS_RANK.__getitem__)
        label = ObservationLabel(status=status)
        seen: set[tuple[int, int]] = set()
        lateralities, severities = [], []
        for i in indices:
            mention = mentions[i]
            if mention.status is not status:
                continue
            if (mention.start, mention.end) in seen:
                continue
            seen.add((mention.start, mention.end))
            label.spans.append(Span(mention.start, mention.end, text[mention.start:mention.end]))
            if mention.cue is not None:
                label.cues.append(Span(mention.cue.start, mention.cue.end, text[mention.cue.start:mention.cue.end]))
            if status in (Status.POSITIVE, Status.UNCERTAIN):
                lower_bound, upper_bound = _neighbours(edges, mention, sentence_of[i])
                window = modifiers.modifier_window(lowered, mention.start, mention.end, lower_bound, upper_bound)
                lateralities.append(modifiers.laterality_of(window))
                severities.append(modifiers.severity_of(window))
        if name not in _NO_LATERALITY:
            label.laterality = modifiers.combine_laterality(lateralities)
        if name not in _NO_SEVERITY:
            label.severity = modifiers.combine_severity(severities)
        observations[name] = label

    observations[NO_FINDING] = _no_finding(text, lowered, observations)
    ordered = {name: observations[name] for name in CHEXPERT_LABELS}
    return LabelerResult(text=text, observations=ordered)


def _neighbours(edges: list[tuple[int, int]], mention: Mention, sentence: tuple[int, int]) -> tuple[int, int]:
    """End of the previous other mention and start of the next one, clipped to the sentence."""
    lower, upper = sentence
    for start, end in edges:
        if end <= mention.start:
            lower = max(lower, end)
        elif start >= mention.end:
            upper = min(upper, start)
            break
    return lower, upper


def _no_finding(text: str, lowered: str, observations: dict[str, ObservationLabel]) -> ObservationLabel:
    """CheXpert's rule: positive when nothing but Support Devices is positive or uncertain."""
    if not text.strip():
        return ObservationLabel()
    for name, label in observations.items():
        if name != DEVICES and label.status in (Status.POSITIVE, Status.UNCERTAIN):
            return ObservationLabel(status=Status.NEGATIVE)
    spans = [Span(m.start(), m.end(), text[m.start():m.end()]) for m in _NORMAL_STATEMENT.finditer(lowered)]
    return ObservationLabel(status=Status.POSITIVE, spans=spans)


def label_reports(texts: Iterable[str]) -> list[LabelerResult]:
    """Label many reports (the rules are compiled once per process, so this is a plain loop)."""
    return [label_report(text) for text in texts]
