"""Radiologist feedback on a drafted report: POST a verdict (accepted / edited / rejected, with
per-finding corrections), GET its versions. The draft itself never changes (libs/feedback/record.py);
what feedback says about the model is in /metrics (libs/feedback/quality.py)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response

from libs.domain.feedback import FeedbackIn, FeedbackOut
from libs.feedback import record as feedback
from services.gateway.api.deps import EngineDep, PrincipalDep, SettingsDep
from services.gateway.publish import deliver_version
from services.gateway.api.routes.reports import require_json
from services.gateway.problems import ProblemError, problem_responses

router = APIRouter(prefix="/api/v1", tags=["feedback"])


def _unknown(report_id: str) -> ProblemError:
    return ProblemError(404, f"no report {report_id}", slug="unknown-report", title="Unknown report")


@router.post(
    "/reports/{report_id}/feedback",
    status_code=201,
    response_model=FeedbackOut,
    summary="Give feedback on a drafted report",
    description="Stores the radiologist's verdict as the report's next feedback version: `accepted`, `edited` "
                "with `final_text` (findings and impression as signed), or `rejected` with a `reason`; "
                "`corrections` give the radiologist's call on observations the report assessed. The draft is "
                "never changed; the latest version is the one the quality metrics count. Each feedback is the "
                "report's next version (FHIR DiagnosticReport final or cancelled, a new SR replacing the "
                "previous, a final ORU) and is delivered to the result destinations.",
    responses=problem_responses(404, 409, 415, 422, descriptions={
        404: "No such report", 409: "The report is not drafted yet",
        422: "Inconsistent feedback, or a correction of an observation the report did not assess"}),
    dependencies=[Depends(require_json)],
)
def give_feedback(report_id: str, body: FeedbackIn, request: Request, response: Response, background: BackgroundTasks,
                  engine: EngineDep, settings: SettingsDep, principal: PrincipalDep) -> FeedbackOut:
    try:
        stored = feedback.record(engine, report_id, body, principal)
    except feedback.UnknownReport:
        raise _unknown(report_id) from None
    except feedback.NoReportYet as exc:
        raise ProblemError(409, str(exc), slug="report-not-ready", title="Report not drafted yet") from None
    except feedback.NotAssessed as exc:
        raise ProblemError(422, str(exc), slug="not-assessed", title="Observation not assessed") from None
    response.headers["Location"] = f"/api/v1/reports/{report_id}/feedback"
    # The verdict is the report's next version: it goes to the PACS, RIS and FHIR destinations.
    deliver_version(settings, request.app.state.pipeline, background,
                    report_id.removeprefix(feedback.REPORT_PREFIX), stored.version + 1)
    return stored


@router.get(
    "/reports/{report_id}/feedback",
    response_model=list[FeedbackOut],
    summary="Feedback versions of a report",
    description="Every feedback given on the report, oldest first (the last is the current one).",
    responses=problem_responses(404, descriptions={404: "No such report"}),
)
def list_feedback(report_id: str, engine: EngineDep) -> list[FeedbackOut]:
    try:
        return feedback.history(engine, report_id)
    except feedback.UnknownReport:
        raise _unknown(report_id) from None
