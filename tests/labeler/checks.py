"""Assertion helper shared by the labeler tests: status, span texts and offsets in one call."""

from __future__ import annotations

from libs.labeler import LabelerResult, Status, label_report


def expect(text: str, observation: str, status: Status, spans: list[str] | None = None,
           laterality: str | None = "any", severity: str | None = "any") -> LabelerResult:
    """Label `text` and check one observation; spans are compared as texts, and every span's offsets
    must point at its text."""
    result = label_report(text)
    label = result.observations[observation]
    assert label.status is status, f"{observation}: {label.status} != {status} in {text!r} ({label})"
    for span in label.spans:
        assert text[span.start:span.end] == span.text, span
    if spans is not None:
        assert [s.text for s in label.spans] == spans, f"{observation} spans {label.spans} in {text!r}"
    if laterality != "any":
        assert label.laterality == laterality, f"{observation} laterality {label.laterality} in {text!r}"
    if severity != "any":
        assert label.severity == severity, f"{observation} severity {label.severity} in {text!r}"
    return result
