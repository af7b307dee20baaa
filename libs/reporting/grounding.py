"""Keeps of a generated draft only what the model has evidence for.

The choice (issue 13: constrain the decoder, filter with the labeler, or regenerate): filter, then
complete from the detection head. Each sentence of the decoder's Findings and Impression is read with
the labeler and checked by libs.reporting.statements; a sentence that fails any check is dropped
whole (rewriting part of a sentence would need a grammar of report language, and half a negation is
worse than none). The renderer then adds, in the template's own wording, every head-positive finding
the kept text does not state, and the impression is rebuilt from the head whenever the kept one does
not name every positive finding. Why not constrained decoding or regeneration: both leave the
guarantee to the decoder's probabilities, and a decoder that learnt its phrasing from adult reports
without images (the reference bundle's) keeps writing "no pneumothorax" and "degenerative changes"
whatever the prompt says; a filter gives the guarantee by construction, for any bundle, at the cost
of shorter drafts when the decoder has little that is supported. How much of the text survives is
measured by `cxr-report evaluate` (text metrics beside bundle 1.2.1's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from libs.reporting.statements import Evidence, SentenceCheck, check_sentences


@dataclass
class GroundedText:
    findings: list[SentenceCheck] = field(default_factory=list)  # kept sentences of the Findings, in order
    impression: list[SentenceCheck] = field(default_factory=list)  # kept sentences of the Impression
    dropped: Counter = field(default_factory=Counter)  # problem -> sentences dropped for it (a sentence counts once
    # per problem it has)
    dropped_sentences: int = 0

    @property
    def findings_text(self) -> str:
        return " ".join(_tidy(s.text) for s in self.findings)

    @property
    def impression_text(self) -> str:
        return " ".join(_tidy(s.text) for s in self.impression)

    def states_present(self, label: str, part: str = "findings") -> bool:
        return any(s.stated.get(label) in ("positive", "uncertain") for s in getattr(self, part))

    def states_absent(self, label: str, part: str = "findings") -> bool:
        return any(s.stated.get(label) == "negative" for s in getattr(self, part))


def ground(findings_text: str, impression_text: str | None, evidence: Evidence) -> GroundedText:
    out = GroundedText()
    for part, text in (("findings", findings_text), ("impression", impression_text or "")):
        for check in check_sentences(text, evidence):
            if not any(c.isalpha() for c in check.text):
                continue  # a stray list number or full stop: formatting, not a statement
            if check.ok:
                getattr(out, part).append(check)
            else:
                out.dropped_sentences += 1
                out.dropped.update(set(check.problems))
    return out


def _tidy(sentence: str) -> str:
    """A kept sentence as it is written into the report: capitalised, ending with a full stop."""
    s = sentence.strip()
    if not s:
        return s
    s = s[:1].upper() + s[1:]
    return s if s[-1] in ".!?" else s + "."
