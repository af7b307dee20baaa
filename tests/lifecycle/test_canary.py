"""The canary comparison on radiologist feedback: paired McNemar on the calls, the arms' edit distance,
rejections and ratings, Bonferroni, and the decision; and the CLI that stores it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from libs.auth.principal import Principal
from libs.domain.feedback import FeedbackIn, FindingCorrection
from libs.domain.request import ReportRequest
from libs.feedback.record import record
from libs.lifecycle import canary, registry
from libs.reporting.render import render_report
from libs.storage.db import session_scope
from libs.storage.models import JobRow, ModelOutputRow
from tests.lifecycle.conftest import two_models
from tests.reporting.helpers import model_output

RADIOLOGIST = Principal(kind="apikey", id="r1", name="Dr R", scopes=frozenset({"user/DiagnosticReport.rus"}))


@pytest.fixture
def trial(engine, lifecycle_settings, make_bundle):  # noqa: ANN001, ANN201
    s = lifecycle_settings.model_copy(update={"canary_min_feedback": 20})
    return (s, *two_models(engine, s, make_bundle, trial="canary"))


def _study(engine, arm: str, production_finds: bool, candidate_finds: bool, a: str, b: str, *,  # noqa: ANN001
           decision: str = "accepted", rating: int | None = None) -> None:
    """A reviewed canary-period job with both models' outputs and the radiologist's feedback: the study has
    a pneumothorax (the radiologist calls it present)."""
    prod = model_output({"Pneumothorax": 0.9 if production_finds else 0.1}, version="1.0.0")
    cand = model_output({"Pneumothorax": 0.9 if candidate_finds else 0.1}, version="2.0.0")
    served, other, served_id, other_id = (cand, prod, b, a) if arm == "canary" else (prod, cand, a, b)
    job_id = str(uuid.uuid4())
    report = render_report(job_id, "1.2.3", served, ReportRequest())
    now = dt.datetime.now(dt.timezone.utc)
    with session_scope(engine) as db:
        db.add(JobRow(id=job_id, study_uid=f"2.25.{uuid.uuid4().int}", idempotency_key=job_id, request={},
                      state="reviewed", model_output=served.model_dump(mode="json"), report=report.model_dump(mode="json"),
                      model_id=served_id, model_arm=arm, created_at=now, updated_at=now))
        db.add(ModelOutputRow(job_id=job_id, model_id=other_id, role="paired", output=other.model_dump(mode="json"),
                              created_at=now))
    body = {"decision": decision, "corrections": [FindingCorrection(observation="Pneumothorax", present=True)],
            "rating": rating}
    if decision == "edited":
        body["final_text"] = "Small right pneumothorax."
    if decision == "rejected":
        body["reason"] = "missed the pneumothorax"
    record(engine, f"rpt-{job_id}", FeedbackIn.model_validate(body), RADIOLOGIST)


def test_a_better_candidate_is_promoted_with_the_paired_test(engine, trial) -> None:  # noqa: ANN001
    s, a, b = trial
    for arm in ["production"] * 25 + ["canary"] * 25:
        shown_misses = arm == "production"
        _study(engine, arm, production_finds=False, candidate_finds=True, a=a, b=b,
               decision="edited" if shown_misses else "accepted", rating=2 if shown_misses else 5)
    report = canary.compare(engine, s, b)
    assert report["decision"] == "promote", report
    tests = {t["test"]: t for t in report["tests"]}
    critical = tests["paired: critical sensitivity (McNemar)"]
    assert critical["significant"] and critical["direction"] == 1 and critical["p"] < 1e-10
    assert report["alpha_per_test"] == pytest.approx(0.01 / report["tests_run"])
    assert report["paired"]["critical_sensitivity"]["candidate"]["value"] == 1.0
    assert report["paired"]["critical_sensitivity"]["production"]["value"] == 0.0
    assert report["arms"]["canary"]["mean_rating"] == 5 and report["arms"]["production"]["mean_edit_distance"] > 0
    assert "**Decision: promote**" in canary.markdown(report)
    registry.store_comparison(engine, b, report, "t")
    assert registry.promote(engine, s, b, "production", "t", "canary won").state == registry.PRODUCTION


def test_a_worse_candidate_is_rolled_back_and_too_little_feedback_holds(engine, trial) -> None:  # noqa: ANN001
    s, a, b = trial
    for arm in ["production"] * 5 + ["canary"] * 5:
        _study(engine, arm, production_finds=True, candidate_finds=False, a=a, b=b,
               decision="rejected" if arm == "canary" else "accepted")
    early = canary.compare(engine, s, b)
    assert early["decision"] == "hold" and "20 per arm needed" in early["why"]
    for arm in ["production"] * 20 + ["canary"] * 20:
        _study(engine, arm, production_finds=True, candidate_finds=False, a=a, b=b,
               decision="rejected" if arm == "canary" else "accepted")
    report = canary.compare(engine, s, b)
    assert report["decision"] == "rollback" and "critical sensitivity" in report["why"]
    assert report["arms"]["canary"]["rejection_rate"]["value"] == 1.0


def test_equal_models_hold(engine, trial) -> None:  # noqa: ANN001
    s, a, b = trial
    for n, arm in enumerate(["production"] * 25 + ["canary"] * 25):
        _study(engine, arm, production_finds=n % 3 != 0, candidate_finds=n % 3 != 0, a=a, b=b)
    report = canary.compare(engine, s, b)
    assert report["decision"] == "hold" and "no test significant" in report["why"]
    with pytest.raises(registry.RegistryError, match="not the canary"):
        canary.compare(engine, s, a)
