"""Heading-value pairs of structured reports: "Pneumothorax: absent.", "Effusion: none; cardiomegaly: yes."

A colon ends a clause for the cue scopes (context.TERMINATORS), which cuts a value off from its
heading. This module reads each colon in a sentence as a heading and its value instead:

* the **heading** is the text before the colon, back to the start of the sentence, a ";" or a
  parenthesis, and, on a line of several pairs ("Pneumothorax: none, effusion: small"), back to the
  comma or colon that ends the previous pair;
* the **value** starts after the colon (or on the next line when the colon ends its line) and runs to
  the next ".", ";", ",", ":", parenthesis or line break.

What happens to the mentions in the heading (applied by labeler.py):

1. If the text after the colon names the same observation itself ("Devices: right PICC", "Effusion:
   no pleural effusion"), the heading is only a heading: it is dropped and that text decides.
2. Else the value decides when it is a status: a value word ("none", "negative", "nil"; "yes",
   "present", "positive"; "n/a") or a cue at the start of the value ("absent", "not seen", "no",
   "resolved"; "possible", "cannot be excluded", "?"; "not assessed"). A pre-negation ("no") must be the
   whole value ("Pneumothorax: no tension" is not a negation), and a value that names a finding of
   its own ("Atelectasis: possible superimposed pneumonia") is that finding's statement, not the
   heading's. "Not assessed" drops the heading mention (not mentioned, no span).
3. Else the heading is read like any clause, but only cues inside it count: a "no" of the previous
   pair on the line cannot reach it.

The inverse form, a "not assessed" heading followed by a list ("Not assessed by this model:
cardiomegaly, fracture."), drops every mention in the list.

A subject with a size or clarity word as its value ("Heart size: normal", "Mediastinum: widened",
"Lungs: clear") is a vocabulary rule (the colon form of the subject + predicate rules), not a heading.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from libs.labeler.context import Cue, CueKind

# Values that are not cues in running text; all but "none seen" must be the whole value, which ends at
# one of _VALUE_END or the text's end ("Pneumothorax: negative for tension" is not a negative value).
_SEEN = r"(?:seen|identified|noted|detected|visible|visualized|evident|present|demonstrated)"
_VALUE_WORDS: tuple[tuple[CueKind, re.Pattern[str]], ...] = (
    (CueKind.POST_NEG, re.compile(r"(?:none|nil)[ \t]+" + _SEEN + r"(?![\w])")),  # "none seen on this study"
) + tuple(
    (kind, re.compile("(?:" + pattern + r")(?=[ \t]*(?:[.;,:()\[\]!\n]|$))"))
    for kind, pattern in (
        (CueKind.POST_NEG, r"none|nil|negative|neg"),
        (CueKind.AFFIRM, r"yes|present|positive|pos|" + _SEEN + r"|confirmed|\+"),
        (CueKind.POST_UNC, r"maybe|suspicious|not certain"),
        (CueKind.POST_UNASSESSED, r"n/a|not applicable"),
    )
)
_VALUE_END = re.compile(r"[;,:()\[\]!\n]|\.(?!\d)")
_COLON = re.compile(r"(?<!\d):(?!\d|//)")
# Where a heading starts at the latest (besides the sentence start).
_HEADING_START = re.compile(r"[;()\n]")
_PAIR_START = re.compile(r"[;()\n,:]")
# The inverse form's heading may hold parentheses: "Not assessed by this model (neither present nor absent):".
_LIST_HEADING_START = re.compile(r"[;\n]")


@dataclass(frozen=True, slots=True)
class Heading:
    """One "<heading>: <value>" pair. Mentions within [start, colon) belong to the heading."""

    start: int
    colon: int
    value: Cue | None  # the value's status cue; None when the value is not a status
    content_end: int  # the text after the colon up to here is what the heading introduces
    value_start: int
    unassessed_list: bool = False  # "Not assessed: <list>": the mentions after the colon say nothing


def find_headings(lowered: str, sentences: list[tuple[int, int]], cues: list[Cue],
                  mention_starts: list[int]) -> list[Heading]:
    """The heading-value pairs of a report (empty without a colon; `mention_starts` sorted)."""
    if ":" not in lowered:
        return []
    colons = [m.start() for m in _COLON.finditer(lowered)]
    if not colons:
        return []
    sentence_starts = [s for s, _ in sentences]
    cue_starts = [c.start for c in cues]
    headings: list[Heading] = []
    for n, colon in enumerate(colons):
        i = bisect.bisect_right(sentence_starts, colon) - 1
        s0, s1 = sentences[i] if i >= 0 else (0, len(lowered))
        previous_colon = n > 0 and colons[n - 1] >= s0
        start = _after_last(_PAIR_START if previous_colon else _HEADING_START, lowered, s0, colon)

        value_start = colon + 1
        line_end = lowered.find("\n", value_start)
        line_end = len(lowered) if line_end < 0 else line_end
        if not lowered[value_start:line_end].strip():
            value_start = line_end  # a heading alone on its line: the value is on the next line
        while value_start < len(lowered) and (lowered[value_start].isspace() or lowered[value_start] in "([-"):
            value_start += 1  # "Pneumothorax: (none)", "Effusion: - none"
        end_match = _VALUE_END.search(lowered, value_start)
        value_end = end_match.start() if end_match else len(lowered)

        # The heading introduces the text up to the end of its sentence or the next pair's heading.
        j = bisect.bisect_right(sentence_starts, value_start) - 1
        content_end = sentences[j][1] if j >= 0 and value_start < len(lowered) else s1
        if n + 1 < len(colons) and colons[n + 1] < content_end:
            content_end = min(content_end, _after_last(_PAIR_START, lowered, value_start, colons[n + 1]))

        if _is_unassessed_heading(_after_last(_LIST_HEADING_START, lowered, s0, colon), colon, cues, cue_starts,
                                  mention_starts):
            headings.append(Heading(start, colon, None, content_end, value_start, unassessed_list=True))
            continue
        value = _value_cue(lowered, value_start, value_end, cues, cue_starts, mention_starts)
        headings.append(Heading(start, colon, value, content_end, value_start))
    return headings


def _after_last(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int:
    """Just after the last match of `pattern` in text[lo:hi], or lo."""
    last = lo
    for match in pattern.finditer(text, lo, hi):
        last = match.end()
    while last < hi and text[last].isspace():
        last += 1
    return last


def _is_unassessed_heading(start: int, colon: int, cues: list[Cue], cue_starts: list[int],
                           mention_starts: list[int]) -> bool:
    """Is the heading "Not assessed (by this model ...)", with no observation named after the cue?"""
    k = bisect.bisect_left(cue_starts, start)
    unassessed = None
    while k < len(cues) and cues[k].start < colon:
        if cues[k].kind.unassesses:
            unassessed = cues[k]
            break
        k += 1
    if unassessed is None:
        return False
    m = bisect.bisect_left(mention_starts, unassessed.start)
    return not (m < len(mention_starts) and mention_starts[m] < colon)


def _value_cue(lowered: str, value_start: int, value_end: int, cues: list[Cue], cue_starts: list[int],
               mention_starts: list[int]) -> Cue | None:
    """The status the value states, as a cue over the value's words; None when it states none."""
    if value_start >= value_end:
        return None
    for kind, pattern in _VALUE_WORDS:
        match = pattern.match(lowered, value_start)
        if match and match.end() <= value_end:
            return Cue(kind, value_start, match.end())
    k = bisect.bisect_left(cue_starts, value_start)
    if k == len(cues) or cue_starts[k] != value_start:
        return None
    cue = cues[k]
    if cue.kind is CueKind.PSEUDO:  # "no change"
        return None
    m = bisect.bisect_left(mention_starts, value_start)
    if m < len(mention_starts) and mention_starts[m] < value_end:
        return None  # the value names a finding of its own: the cue is that finding's
    if cue.kind is CueKind.PRE_NEG and lowered[cue.end:value_end].strip():
        return None  # "Pneumothorax: no tension"
    return cue
