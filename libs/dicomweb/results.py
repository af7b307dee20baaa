"""Delivering a finished report to each result destination, and recording the outcome: to the PACS
as DICOM SRs (STOW-RS, or C-STORE to a DIMSE destination: libs/dimse/scu.py), to a RIS / EHR as an
HL7 ORU^R01 over MLLP (libs/hl7), and to a FHIR R4 server as a transaction Bundle of the report's
resources (libs/fhir/push.py). Every destination is retried, held and recorded alike.

Runs after the QA step has committed the report (libs/pipeline/steps.py, `_store_results`), only
for jobs whose `results_state` is `pending` (set together with the report when some PACS has
`store_results: true`). It never raises and never touches the report: a PACS that is down delays
nothing and loses nothing. Each request is retried with backoff (libs/dicomweb/client.py); the
outcome of each attempt goes on the job:

    results_state: stored (every server took it) | partial (some did) | failed (none did)
                   | dead (partial or failed on attempt `results_max_attempts`: a dead letter)
    results: {"sr_series_uid", "sr_instance_uid" (the first SR), "srs": [{"template", "series_uid",
              "instance_uid"}] (one per CXR_SR_TEMPLATES entry), "attempts", "attempted_at",
              "servers": {name: {"status", "detail", "at"}}}

A partial or failed store-back is not left so: the reconciler (libs/pipeline/reconcile.py) sets it
back to pending and sends the job's QA message again, whose step calls this once more, until it is
stored or out of attempts. Ops re-drive a dead one (`POST /api/v1/ops/dead-letters/{job_id}/redrive`).

The SR's UIDs are derived from the job id, so a second attempt (a redelivered message after a
worker died) sends the same instance, which a PACS keeps once; servers that already took it are
not sent it again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from libs.core.config import DimseDestination, FhirDestination, Hl7Destination, PacsServer
from libs.dicomweb.client import PacsUnavailable, describe, make_client
from libs.domain.job import JobState
from libs.domain.report import Report
from libs.domain.request import ReportRequest
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import JobRow

log = logging.getLogger(__name__)

PENDING, STORED, PARTIAL, FAILED, DEAD = (crud.RESULTS_PENDING, crud.RESULTS_STORED, crud.RESULTS_PARTIAL,
                                         crud.RESULTS_FAILED, crud.RESULTS_DEAD)


def build_job_srs(job: JobRow, ctx, verdict=None) -> list:  # noqa: ANN001 - PipelineContext, FeedbackOut
    """The job's report SRs, one per CXR_SR_TEMPLATES entry (text, tid1500), in that order; their
    evidence is the images the report was drafted from and their UIDs derive from the job. With the
    radiologist's `verdict` the text SR is that version's (signed or rejected), replacing the previous."""
    import pydicom

    from libs.feedback.record import report_version
    from libs.sr import ModelIdentity, build_report_sr, sr_uids
    from libs.sr.measurement_report import build_measurement_report_sr, measurement_report_uids

    report = Report.model_validate(job.report)
    request = ReportRequest.model_validate(job.request)
    with session_scope(ctx.engine) as session:
        stored = crud.instances_for_study(session, job.study_uid)
    if request.images:
        named = {r.instance_uid for r in request.images}
        stored = [i for i in stored if i.sop_instance_uid in named]
    if not stored:
        raise ValueError(f"no stored images of study {job.study_uid} to reference")
    sources = [pydicom.dcmread(str(i.path), stop_before_pixels=True) for i in stored]
    output = job.model_output or {}
    model = ModelIdentity(name=str(output.get("model_name") or "unknown model"),
                          version=str(output.get("model_version") or report.model_version))
    builders = {"text": (build_report_sr, sr_uids), "tid1500": (build_measurement_report_sr, measurement_report_uids)}
    version = report_version(verdict)
    srs = []
    for template in dict.fromkeys(ctx.settings.sr_templates):
        build, uids = builders[template]
        if template == "text" and verdict is not None:
            # The radiologist's verdict is the report's next version: a new SR that names the one it replaces.
            series_uid, sop_uid = sr_uids(job.id, version)
            srs.append(build_report_sr(report, sources, model=model, series_instance_uid=series_uid,
                                       sop_instance_uid=sop_uid, read_instance_uid=job.instance_uid,
                                       instance_number=version, verdict=verdict,
                                       predecessor_uids=sr_uids(job.id, version - 1),
                                       verifying_organization=ctx.settings.sr_verifying_organization))
            continue
        series_uid, sop_uid = uids(job.id)  # TID 1500: the AI's results, the same in every version
        srs.append(build(report, sources, model=model, series_instance_uid=series_uid, sop_instance_uid=sop_uid,
                         read_instance_uid=job.instance_uid))
    return srs


def _sends_srs(target: object) -> bool:
    return isinstance(target, (PacsServer, DimseDestination))


def stow_sr(pacs: PacsServer, sr) -> str:  # noqa: ANN001 - a pydicom Dataset
    """Stores one SR with STOW-RS; returns a short detail line or raises PacsUnavailable."""
    client = make_client(pacs)
    try:
        answer = client.store_instances([sr], study_instance_uid=str(sr.StudyInstanceUID))
    except Exception as exc:  # noqa: BLE001
        raise describe(pacs, exc, f"storing the report SR of study {sr.StudyInstanceUID} (STOW-RS)") from exc
    failed = list(getattr(answer, "FailedSOPSequence", None) or [])
    if failed:
        reason = getattr(failed[0], "FailureReason", "?")
        raise PacsUnavailable(f"PACS {pacs.name!r} refused the report SR (FailureReason {reason})")
    referenced = [str(i.ReferencedSOPInstanceUID) for i in getattr(answer, "ReferencedSOPSequence", None) or []
                  if "ReferencedSOPInstanceUID" in i]
    if referenced and str(sr.SOPInstanceUID) not in referenced:
        raise PacsUnavailable(f"PACS {pacs.name!r} did not confirm the report SR")
    warning = next((getattr(i, "WarningReason", None) for i in getattr(answer, "ReferencedSOPSequence", None) or []
                    if "WarningReason" in i), None)
    return "stored" + (f" (warning reason {warning})" if warning is not None else "")


def store_sr(target: PacsServer | DimseDestination | Hl7Destination | FhirDestination, sr, settings,  # noqa: ANN001
             job: JobRow | None = None, verdict=None) -> str:  # noqa: ANN001 - FeedbackOut: the version sent
    """The finished report to one destination, by its protocol: the SR by STOW-RS or C-STORE, an
    ORU^R01 over MLLP (built from the report and the SR's patient and study attributes, which the SR
    copied from the source images), or the job's FHIR resources as a transaction Bundle (built as
    GET /fhir builds them; the SR is not used). Raises PacsUnavailable with the reason."""
    if isinstance(target, FhirDestination):
        from libs.fhir.push import PushError, PushRejected, push_job

        if job is None:
            raise ValueError("a FHIR push needs the job")
        try:
            result = push_job(job.id, settings, destination=target)
        except PushRejected as exc:  # a 4xx: recorded as failed with the server's diagnostics
            raise PacsUnavailable(f"FHIR server {target.name!r} rejected the report with HTTP {exc.status}: "
                                  f"{exc.detail}") from exc
        except PushError as exc:  # PushFailed (transport errors, 408/429/5xx after the retries), no resources
            raise PacsUnavailable(f"FHIR server {target.name!r}: {exc}") from exc
        return f"pushed (HTTP {result.status}, {result.attempts} attempt(s))"
    if isinstance(target, DimseDestination):
        from libs.dimse.scu import cstore

        return cstore(target, sr, settings.dimse_ae_title)
    if isinstance(target, Hl7Destination):
        from libs.hl7.mllp import HL7Unavailable, send
        from libs.hl7.oru import OruHeader, build_oru_r01, control_id, to_er7

        if job is None:
            raise ValueError("an ORU^R01 needs the job")
        output = job.model_output or {}
        report = Report.model_validate(job.report)
        model = f"{output.get('model_name') or 'unknown model'} {output.get('model_version') or report.model_version}"
        header = OruHeader(settings.hl7_sending_application, settings.hl7_sending_facility,
                           target.receiving_application, target.receiving_facility, settings.hl7_service_code)
        message = to_er7(build_oru_r01(report, sr, job.id, header, model, verdict=verdict))
        try:
            return send(target, message, control_id(job.id, 1 if verdict is None else verdict.version + 1))
        except HL7Unavailable as exc:
            raise PacsUnavailable(exc.reason) from exc
    return stow_sr(target, sr)


def store_results(job_id: str, ctx) -> str | None:  # noqa: ANN001 - PipelineContext
    """Stores the job's SR to every PACS with store_results; returns the job's results_state."""
    try:
        return _store_results(job_id, ctx)
    except Exception:  # noqa: BLE001 - the report is committed; this must never fail the step
        log.exception("job %s: storing the report SR failed unexpectedly", job_id)
        with session_scope(ctx.engine) as session:
            job = crud.get_job(session, job_id)
            previous = dict(job.results or {}) if job is not None else {}
        outcome = {**previous, "error": "unexpected error while storing the report SR; see the log"}
        return _record(ctx, job_id, FAILED, outcome)


def _store_results(job_id: str, ctx) -> str | None:  # noqa: ANN001
    with session_scope(ctx.engine) as session:
        job = crud.get_job(session, job_id)
        if job is None:
            return None
        session.expunge(job)
    if job.state != JobState.REVIEWED.value or job.results_state != PENDING:
        return job.results_state
    servers = ctx.settings.result_servers
    previous: dict[str, Any] = dict((job.results or {}).get("servers") or {})
    attempts = crud.results_attempts(job.results)
    # The version this round delivers: 1, the AI draft; then each radiologist verdict (release_version).
    version = int((job.results or {}).get("report_version") or 1)
    rounds = {"report_version": version, "previous": (job.results or {}).get("previous")}
    from libs.feedback.record import latest

    with session_scope(ctx.engine) as session:
        verdict = latest(session, job_id, version - 1) if version > 1 else None
    try:
        srs = build_job_srs(job, ctx, verdict)
    except Exception as exc:  # noqa: BLE001 - e.g. a source file gone; retried like a PACS that is down
        log.warning("job %s: report SR not built: %s", job_id, exc)
        return _record(ctx, job_id, FAILED, {
            **rounds, "attempts": attempts, "servers": previous,
            "error": f"the report SR could not be built: {type(exc).__name__}: {exc}"[:500]})
    templates = list(dict.fromkeys(ctx.settings.sr_templates))
    outcome: dict[str, Any] = {
        **rounds,
        "sr_series_uid": str(srs[0].SeriesInstanceUID), "sr_instance_uid": str(srs[0].SOPInstanceUID),
        "srs": [{"template": t, "series_uid": str(sr.SeriesInstanceUID), "instance_uid": str(sr.SOPInstanceUID)}
                for t, sr in zip(templates, srs)],
        "attempts": attempts, "servers": previous}
    for pacs in servers:
        if previous.get(pacs.name, {}).get("status") == STORED:
            continue
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        try:
            # DICOM destinations take every SR (each is kept once: its UIDs are the job's); the others
            # (HL7, FHIR) one message built from the report, with the patient and study of the SR.
            details = [store_sr(pacs, sr, ctx.settings, job, verdict)
                       for sr in (srs if _sends_srs(pacs) else srs[:1])]
            detail = details[0] if len(set(details)) == 1 else "; ".join(
                f"{t}: {d}" for t, d in zip(templates, details))
            outcome["servers"][pacs.name] = {"status": STORED, "detail": detail, "at": now}
            log.info("job %s: report stored to %s (%s)", job_id, pacs.name, detail)
        except PacsUnavailable as exc:
            outcome["servers"][pacs.name] = {"status": FAILED, "detail": exc.reason, "at": now}
            log.warning("job %s: report SR not stored: %s", job_id, exc.reason)
    statuses = [outcome["servers"].get(p.name, {}).get("status") for p in servers]
    state = STORED if all(s == STORED for s in statuses) else PARTIAL if STORED in statuses else FAILED
    return _record(ctx, job_id, state, outcome)


def _record(ctx, job_id: str, state: str, results: dict[str, Any]) -> str:  # noqa: ANN001
    """Writes one attempt's outcome (only over `pending`: a concurrent attempt that recorded first wins).

    `results["attempts"]` holds the attempts made before this one; an unfinished store-back on
    attempt `results_max_attempts` becomes a dead letter instead of waiting for the reconciler.
    """
    attempts = crud.results_attempts(results) + 1
    if state in (FAILED, PARTIAL) and attempts >= ctx.settings.results_max_attempts:
        log.warning("job %s: report SR not stored after %d attempts; dead-lettered", job_id, attempts)
        state = DEAD
    results = {**results, "attempts": attempts, "attempted_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    with session_scope(ctx.engine) as session:
        job = session.get(JobRow, job_id, with_for_update=True)
        current = int((job.results or {}).get("report_version") or 1) if job is not None else None
        # Only over this round's pending state: a round for a newer version (a radiologist signed
        # meanwhile) is not overwritten by the outcome of the older one.
        if job is None or job.results_state != PENDING or current != int(results.get("report_version") or 1):
            return job.results_state if job is not None else state
        job.results_state, job.results = state, results
    return state


def release_version(engine, settings, job_id: str, version: int) -> bool:  # noqa: ANN001
    """A radiologist's verdict is the report's next version (`version`): delivery starts again for
    it, to every result destination (the SR that replaces the draft's, the final ORU, the FHIR
    version). It goes out even in co-sign mode: a radiologist's report is what that mode waits for.
    Returns True when the caller should send the job's QA message (the step that delivers)."""
    if not settings.result_servers:
        return False
    with session_scope(engine) as session:
        job = session.get(JobRow, job_id, with_for_update=True)
        if job is None or job.state != JobState.REVIEWED.value:
            return False
        previous = {k: v for k, v in (job.results or {}).items() if k != "previous"}
        job.results = {"report_version": version, "servers": {}, "attempts": 0, "previous": previous or None}
        job.results_state = PENDING
    return True
