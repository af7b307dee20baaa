"""libs/feedback/quality.py: which calls a verdict confirms, the latest version counting, the window,
and the critical observations pooled."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import update

from libs.auth.principal import Principal
from libs.domain.feedback import FeedbackIn
from libs.domain.job import JobState
from libs.domain.report import AssessedObservation, Report
from libs.domain.request import ReportRequest
from libs.feedback.quality import window_quality
from libs.feedback.record import record
from libs.storage import crud
from libs.storage.db import get_engine, session_scope, upgrade_schema
from libs.storage.models import JobRow, ReportFeedbackRow

DR = Principal(kind="jwt", id="dr-1")
# The head: effusion yes (critical), pneumothorax no (critical), edema yes
HEAD = {"Pleural Effusion": True, "Pneumothorax": False, "Edema": True}


def _reviewed(engine, study: str) -> str:  # noqa: ANN001
    with session_scope(engine) as s:
        job = crud.create_job(s, study, ReportRequest())[0]
        report = Report(report_id=f"rpt-{job.id}", study_id=study, findings=[], findings_text="Findings.",
                        impression="Impression.", recommendations="", model_version="t",
                        observations=[AssessedObservation(label=k, probability=0.9 if v else 0.1, threshold=0.5,
                                                          present=v, is_critical=k != "Edema")
                                      for k, v in HEAD.items()])
        s.execute(update(JobRow).where(JobRow.id == job.id).values(state=JobState.REVIEWED.value,
                                                                  report=report.model_dump(mode="json")))
        return f"rpt-{job.id}"


def test_verdicts_confirm_calls_latest_version_counts_window_and_critical_pooling(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'q.db'}")
    upgrade_schema(engine)
    accepted, rejected, edited, old = (_reviewed(engine, f"1.2.{i}") for i in range(4))
    record(engine, accepted, FeedbackIn(decision="accepted"), DR)
    # rejected: confirms nothing but its correction (there was a pneumothorax the head missed)
    record(engine, rejected, FeedbackIn(decision="rejected", reason="missed pneumothorax",
                                        corrections=[{"observation": "Pneumothorax", "present": True}]), DR)
    # first accepted, then edited with the effusion struck: only the edit counts
    record(engine, edited, FeedbackIn(decision="accepted"), DR)
    record(engine, edited, FeedbackIn(decision="edited", final_text="Findings changed.",
                                      corrections=[{"observation": "Pleural Effusion", "present": False}]), DR)
    record(engine, old, FeedbackIn(decision="rejected", reason="old"), DR)
    with session_scope(engine) as s:  # outside the window
        s.execute(update(ReportFeedbackRow).where(ReportFeedbackRow.report_id == old)
                  .values(created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)))

    q = window_quality(engine, 30)
    assert dict(q.decisions) == {"accepted": 1, "rejected": 1, "edited": 1}
    assert q.rate("rejected") == q.rate("edited") == 1 / 3
    assert len(q.edit_distances) == 1 and q.edit_fractions[0] > 0
    assert dict(q.calls["Pleural Effusion"]) == {"tp": 1, "fp": 1}  # accepted confirms; edited struck it
    assert dict(q.calls["Pneumothorax"]) == {"tn": 2, "fn": 1}  # accepted + edited confirm; rejected corrects
    assert dict(q.calls["Edema"]) == {"tp": 2}  # the rejected report says nothing about edema
    assert q.sensitivity(q.calls["Pneumothorax"]) == 0.0 and q.specificity(q.calls["Pneumothorax"]) == 1.0
    critical = q.critical()
    assert dict(critical) == {"tp": 1, "fp": 1, "tn": 2, "fn": 1}
    assert q.sensitivity(critical) == 0.5 and q.specificity(critical) == 2 / 3
    assert window_quality(engine, 60).reports == 4  # the old one is back in a longer window


def test_a_report_without_observations_accepts_corrections_of_its_findings(tmp_path: Path) -> None:
    from libs.domain.report import Finding
    from libs.feedback.record import NotAssessed

    engine = get_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_schema(engine)
    with session_scope(engine) as s:  # drafted before reports listed every assessed observation
        job = crud.create_job(s, "1.2.9", ReportRequest())[0]
        report = Report(report_id=f"rpt-{job.id}", study_id="1.2.9", findings_text="Effusion.", impression="Effusion.",
                        recommendations="", model_version="old",
                        findings=[Finding(finding="Small left pleural effusion", label="Pleural Effusion",
                                          confidence=0.8)])
        s.execute(update(JobRow).where(JobRow.id == job.id).values(state=JobState.REVIEWED.value,
                                                                  report=report.model_dump(mode="json")))
    stored = record(engine, f"rpt-{job.id}", FeedbackIn(decision="accepted", corrections=[
        {"observation": "Pleural Effusion", "present": False}]), DR)
    assert stored.version == 1
    try:
        record(engine, f"rpt-{job.id}", FeedbackIn(decision="accepted", corrections=[
            {"observation": "Edema", "present": True}]), DR)
    except NotAssessed as exc:
        assert "Edema" in str(exc)
    else:
        raise AssertionError("a correction of an observation the report never named was stored")
