"""Sentence splitting with character offsets.

Negation and uncertainty never reach past a sentence, so the splitter only has to avoid two mistakes
seen in radiology text: splitting inside "1.5 cm" / "vs." / "e.g." (which would cut a negation scope
short) and running two dictated sentences together when the period is missing but a line break is not.
"""

from __future__ import annotations

import re

# A period/!/? followed by whitespace or the end, or a line break. "1.5" has no space after the dot.
_BOUNDARY = re.compile(r"[.!?]+(?=\s|$)|\n+")
_WORD_BEFORE = re.compile(r"([A-Za-z]+)\.*$")
# Abbreviations after which a period does not end the sentence.
_ABBREVIATIONS = frozenset(
    {"vs", "v", "e", "g", "i", "eg", "ie", "dr", "approx", "cf", "etc", "mr", "mrs", "st", "incl"}
)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed, in order; text[start:end] is the sentence."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group().startswith((".",)):
            word = _WORD_BEFORE.search(text, max(start, match.start() - 12), match.start() + 1)
            if word and word.group(1).lower() in _ABBREVIATIONS:
                continue
        end = match.end() if match.group()[0] != "\n" else match.start()
        _append(text, start, end, spans)
        start = match.end()
    _append(text, start, len(text), spans)
    return spans


def _append(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))
