"""What radiologists' feedback says about the model over a rolling window (Prometheus series in
libs/observability/pipeline.py).

For each report with feedback in the window, its latest version counts:
- decisions: accepted / edited / rejected, so the rejection and edit rates;
- edit distance of edited reports (characters, and as a fraction of the draft's length);
- per observation, the head's call against the radiologist's final call: a correction names it;
  otherwise an accepted or edited report confirms every call of the head; a rejected one confirms
  nothing (only its corrections count). That gives true/false positives/negatives, so sensitivity
  TP / (TP + FN) and specificity TN / (TN + FP) per observation, and pooled over the critical ones.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from libs.domain.labels import CRITICAL_LABELS
from libs.domain.report import Report
from libs.storage.db import session_scope
from libs.storage.models import JobRow, ReportFeedbackRow

OUTCOMES = ("tp", "fp", "tn", "fn")


@dataclass
class Quality:
    window_days: float
    decisions: Counter = field(default_factory=Counter)
    edit_distances: list[int] = field(default_factory=list)
    edit_fractions: list[float] = field(default_factory=list)
    calls: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    @property
    def reports(self) -> int:
        return sum(self.decisions.values())

    def rate(self, decision: str) -> float | None:
        return self.decisions[decision] / self.reports if self.reports else None

    @staticmethod
    def sensitivity(c: Counter) -> float | None:
        return c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None

    @staticmethod
    def specificity(c: Counter) -> float | None:
        return c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else None

    @staticmethod
    def f1(c: Counter) -> float | None:
        """2 TP / (2 TP + FP + FN): concept drift is a fall in it (libs/lifecycle/drift.py)."""
        denominator = 2 * c["tp"] + c["fp"] + c["fn"]
        return 2 * c["tp"] / denominator if denominator else None

    def critical(self) -> Counter:
        pooled: Counter = Counter()
        for label, c in self.calls.items():
            if label in CRITICAL_LABELS:
                pooled.update(c)
        return pooled


def _outcome(head: bool, truth: bool) -> str:
    return ("tp" if truth else "fp") if head else ("fn" if truth else "tn")


def radiologist_calls(decision: str, corrections: list[dict] | None, signed: dict[str, bool]) -> dict[str, bool]:
    """The radiologist's call per observation: an explicit correction, else (for a signed report, accepted or
    edited) the call of the draft they signed; a rejected report confirms nothing it did not correct.
    The one rule behind these metrics, the canary comparison and the bias audit (libs/lifecycle)."""
    explicit = {c["observation"]: bool(c["present"]) for c in corrections or []}
    return explicit if decision == "rejected" else {**signed, **explicit}


def latest_feedback(since: dt.datetime | None = None):  # noqa: ANN201 - a subquery
    """(job_id, version) of each job's latest feedback (given since `since`): join ReportFeedbackRow on both."""
    query = select(ReportFeedbackRow.job_id, func.max(ReportFeedbackRow.version).label("version"))
    if since is not None:
        query = query.where(ReportFeedbackRow.created_at >= since)
    return query.group_by(ReportFeedbackRow.job_id).subquery()


def window_quality(engine: Engine, window_days: float, now: dt.datetime | None = None) -> Quality:
    now = now or dt.datetime.now(dt.timezone.utc)
    quality = Quality(window_days=window_days)
    with session_scope(engine) as session:
        latest = latest_feedback(now - dt.timedelta(days=window_days))
        rows = session.execute(
            select(ReportFeedbackRow.decision, ReportFeedbackRow.corrections, ReportFeedbackRow.edit_distance,
                   ReportFeedbackRow.draft_chars, JobRow.report)
            .join(latest, (ReportFeedbackRow.job_id == latest.c.job_id)
                  & (ReportFeedbackRow.version == latest.c.version))
            .join(JobRow, JobRow.id == ReportFeedbackRow.job_id)
        ).all()
    for decision, corrections, distance, draft_chars, report_json in rows:
        quality.decisions[decision] += 1
        if decision == "edited" and distance is not None:
            quality.edit_distances.append(distance)
            quality.edit_fractions.append(distance / max(1, draft_chars))
        report = Report.model_validate(report_json)
        head = {o.label: o.present for o in report.observations}
        truth = radiologist_calls(decision, corrections, head)
        for label, call in head.items():
            if label in truth:
                quality.calls[label][_outcome(call, truth[label])] += 1
    return quality
