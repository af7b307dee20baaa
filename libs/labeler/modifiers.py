"""Laterality and severity of a mentioned finding, read from the words right around it.

The window is the mention itself plus the words before it back to the previous finding or clause
boundary ("small left | pleural effusion") and the words after it up to the next finding, comma or
conjunction ("effusion | on the left", but not "effusion | and right basilar atelectasis").
"""

from __future__ import annotations

import re

from libs.labeler.types import Laterality, Severity

_LATERALITY = re.compile(
    r"(?<![\w])(?:(?P<both>bilateral\w*|both|bibas\w*|biapical\w*|(?:left|right) (?:greater|more|larger|worse|"
    r"and|&) (?:than )?(?:left|right))|(?P<left>left|lingula\w*)|(?P<right>right))(?![\w])"
)
_SEVERITY = re.compile(
    r"(?<![\w])(?:(?P<mild>mild(?:ly)?|minimal(?:ly)?|slight(?:ly)?|small|smaller|tiny|trace|trivial|minor)|"
    r"(?P<moderate>moderate(?:ly)?|medium|moderate-sized)|"
    r"(?P<severe>severe(?:ly)?|large|larger|marked(?:ly)?|massive|extensive|huge|substantial|considerable|gross))"
    r"(?![\w])"
)
# Words after a mention that start someone else's phrase.
_FORWARD_STOP = re.compile(r"[,;:(]|(?<![\w])(?:and|or|with|without|but|which|no|not)(?![\w])")
# ("and" between two sides, as in "right and left effusions", is part of the phrase.)
_BACKWARD_STOP = re.compile(
    r"[,;:)]|(?<![\w])(?:and(?!\s+(?:left|right)\b)|or|with|without|but|which|of|from|to|for|versus|vs|in)(?![\w])"
)
_SEVERITY_RANK = {"mild": 1, "moderate": 2, "severe": 3}
_MAX_WINDOW = 60


def modifier_window(lowered: str, start: int, end: int, lower_bound: int, upper_bound: int) -> str:
    """The text around lowered[start:end] that can hold its modifiers (bounds: neighbouring mentions/clause)."""
    back_from = max(lower_bound, start - _MAX_WINDOW)
    before = lowered[back_from:start]
    stops = list(_BACKWARD_STOP.finditer(before))
    if stops:
        before = before[stops[-1].end():]
    ahead_to = min(upper_bound, end + _MAX_WINDOW)
    after = lowered[end:ahead_to]
    stop = _FORWARD_STOP.search(after)
    if stop:
        after = after[: stop.start()]
    return before + lowered[start:end] + after


def laterality_of(window: str) -> Laterality | None:
    sides: set[str] = set()
    for match in _LATERALITY.finditer(window):
        sides.add(match.lastgroup or "")
    if "both" in sides or {"left", "right"} <= sides:
        return "bilateral"
    if "left" in sides:
        return "left"
    if "right" in sides:
        return "right"
    return None


def severity_of(window: str) -> Severity | None:
    """The most severe grade stated ("mild to moderate" -> moderate): the safer reading for triage."""
    best: str | None = None
    for match in _SEVERITY.finditer(window):
        grade = match.lastgroup or ""
        if best is None or _SEVERITY_RANK[grade] > _SEVERITY_RANK[best]:
            best = grade
    return best  # type: ignore[return-value]


def combine_laterality(values: list[Laterality | None]) -> Laterality | None:
    sides = {v for v in values if v}
    if not sides:
        return None
    if "bilateral" in sides or {"left", "right"} <= sides:
        return "bilateral"
    return next(iter(sides))  # type: ignore[return-value]


def combine_severity(values: list[Severity | None]) -> Severity | None:
    grades = [v for v in values if v]
    if not grades:
        return None
    return max(grades, key=lambda g: _SEVERITY_RANK[g])
