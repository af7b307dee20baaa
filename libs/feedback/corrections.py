"""RaDialog's correction task: a radiologist corrects the findings of a draft, the model writes the draft
again conditioned on the corrected findings, and the workstation shows what changed.

- `request` (the gateway) stores the corrections, one per observation changed (present / absent, side,
  severity), as a pending row and hands back its id; the regeneration runs where the model is loaded
  (the inference service's `cxr.regenerate` task, or the gateway's own process with the in-process queue).
- `regenerate` (there) turns the head's output into the radiologist's calls (a corrected observation
  is certain: probability 1 or 0, so the decoder's prompt says so), decodes the text again with the
  same image and clinical context, and renders it with the report template like any draft (the same
  grounding, so the text cannot contradict the calls); the row gets the regenerated Report.
- `word_diff` is what the page shows: the draft's findings and impression against the regenerated ones.

The original draft is never changed and nothing is signed here: the radiologist takes the regenerated
text into the editor, and what they sign is feedback (libs/feedback/record.py) with the same calls.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from libs.auth.principal import Principal
from libs.domain.feedback import FindingCorrection
from libs.domain.model_output import ModelOutput
from libs.domain.report import Report
from libs.feedback.record import NotAssessed, _load_report
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import JobRow, ReportCorrectionRow

log = logging.getLogger(__name__)

PENDING, DONE, FAILED = "pending", "done", "failed"


class UnknownCorrection(Exception):
    pass


@dataclass(frozen=True)
class Correction:
    id: str
    job_id: str
    corrections: list[FindingCorrection]
    state: str
    draft: Report | None
    text_from_model: bool | None
    error: str | None
    created_at: dt.datetime

    @property
    def report_id(self) -> str:
        return f"rpt-{self.job_id}"


def _out(row: ReportCorrectionRow) -> Correction:
    return Correction(id=row.id, job_id=row.job_id, state=row.state,
                      corrections=[FindingCorrection.model_validate(c) for c in row.corrections],
                      draft=Report.model_validate(row.draft) if row.draft else None,
                      text_from_model=row.text_from_model, error=row.error, created_at=crud.aware(row.created_at))


def request(engine: Engine, report_id: str, corrections: list[FindingCorrection], who: Principal) -> Correction:
    """A pending correction of the report's draft. Raises UnknownReport, NoReportYet, NotAssessed, or
    ValueError when nothing is corrected (there would be nothing to regenerate)."""
    if not corrections:
        raise ValueError("no finding was corrected: change a call, side or severity first")
    with session_scope(engine) as session:
        job, report = _load_report(session, report_id)
        assessed = {o.label for o in report.observations}
        unknown = [c.observation for c in corrections if c.observation not in assessed]
        if unknown:
            raise NotAssessed(f"the report did not assess: {', '.join(unknown)}")
        row = ReportCorrectionRow(id=str(uuid.uuid4()), job_id=job.id, state=PENDING,
                                  corrections=[c.model_dump(mode="json") for c in corrections],
                                  requested_by=f"{who.kind}:{who.id}"[:200],
                                  created_at=dt.datetime.now(dt.timezone.utc))
        session.add(row)
        session.flush()
        return _out(row)


def get(engine: Engine, correction_id: str, job_id: str | None = None) -> Correction:
    """Raises UnknownCorrection (also when it belongs to another report than `job_id`)."""
    with session_scope(engine) as session:
        row = session.get(ReportCorrectionRow, correction_id) if len(correction_id) <= 36 else None
        if row is None or (job_id is not None and row.job_id != job_id):
            raise UnknownCorrection(correction_id)
        return _out(row)


def corrected_output(output: ModelOutput, corrections: list[FindingCorrection]) -> ModelOutput:
    """The head's output with the radiologist's calls in it: each corrected observation certain (1 or 0;
    below a zero threshold nothing is, so that one is raised just above 0), its box kept only when present."""
    calls = {c.observation: c for c in corrections}
    predictions = []
    for pred in output.predictions:
        call = calls.get(pred.label)
        if call is None or not pred.assessed:
            predictions.append(pred)
            continue
        threshold = pred.threshold if pred.threshold else 1e-6
        predictions.append(pred.model_copy(update={
            "probability": 1.0 if call.present else 0.0, "threshold": threshold,
            "bounding_box": pred.bounding_box if call.present else None}))
    return output.model_copy(update={"predictions": predictions, "text": None})


def regenerate(correction_id: str, ctx) -> Correction:  # noqa: ANN001 - libs.pipeline.context.PipelineContext
    """Runs a pending correction (idempotent: a done or failed one is returned as it is). A failure is
    stored on the row with its reason, so the page says why instead of waiting."""
    from libs.domain.request import ReportRequest
    from libs.qa.laterality import image_info_for_job
    from libs.reporting.render import render_report

    with session_scope(ctx.engine) as session:
        row = session.get(ReportCorrectionRow, correction_id)
        if row is None:
            raise UnknownCorrection(correction_id)
        if row.state != PENDING:
            return _out(row)
        job = session.get(JobRow, row.job_id)
        assert job is not None  # a foreign key
        calls = [FindingCorrection.model_validate(c) for c in row.corrections]
        request_ = ReportRequest.model_validate(job.request)
        output = corrected_output(ModelOutput.model_validate(job.model_output), calls)
        image_info = image_info_for_job(session, job)
        job_id, study_uid, image_path = job.id, job.study_uid, job.image_path
        instance_path = _instance_path(session, job)
    state, draft, from_model, error = FAILED, None, None, None
    try:
        runner = ctx.runner
        if runner.has_decoder:
            image = _model_image(image_path, instance_path, runner.image_size)
            output = output.model_copy(update={
                "text": runner.regenerate_text(image, output, request_.clinical_context),
                "text_sees_image": bool((runner.manifest.generation and runner.manifest.generation.image_tokens))})
        from_model = runner.has_decoder
        report = render_report(job_id, study_uid, output, request_, image=image_info,
                               asserted={c.observation: c for c in calls})
        state, draft = DONE, report.model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001 - stored for the radiologist; no report text in the log
        error = f"the draft could not be regenerated: {type(exc).__name__}: {exc}"[:2000]
        log.warning("correction %s of job %s failed: %s", correction_id, job_id, type(exc).__name__)
    with session_scope(ctx.engine) as session:
        row = session.get(ReportCorrectionRow, correction_id)
        if row.state == PENDING:
            row.state, row.draft, row.text_from_model, row.error = state, draft, from_model, error
            row.finished_at = dt.datetime.now(dt.timezone.utc)
        session.flush()
        return _out(row)


def _instance_path(session, job: JobRow) -> str | None:  # noqa: ANN001 - Session
    from libs.storage.models import InstanceRow

    instance = session.get(InstanceRow, job.instance_uid) if job.instance_uid else None
    return instance.path if instance is not None else None


def _model_image(image_path: str | None, instance_path: str | None, size: int):  # noqa: ANN202 - np.ndarray
    """The image the draft was made from, as the model read it: the preprocessed array the ingestion step
    kept, else the stored DICOM preprocessed again."""
    import numpy as np

    if image_path and Path(image_path).is_file():
        image = np.load(image_path)
        if image.shape == (size, size):
            return image.astype(np.float32, copy=False)
    if not instance_path or not Path(instance_path).is_file():
        raise FileNotFoundError("neither the preprocessed image nor the DICOM instance is stored any more")
    from libs.dicom import load_for_model

    _, pre = load_for_model(Path(instance_path), size=size)
    return pre.array.astype(np.float32, copy=False)


# ---- what the page shows ----------------------------------------------------------------------

_WORD = re.compile(r"(\S+)(\s*)")


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(op, text) runs turning `before` into `after` word by word: op is "same", "del" or "ins". Words are
    compared without their spacing; each run keeps the spacing (line breaks too) that follows its words."""
    a, b = _WORD.findall(before.strip()), _WORD.findall(after.strip())
    runs: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=[w for w, _ in a], b=[w for w, _ in b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            runs.append(("same", "".join(w + s for w, s in b[j1:j2])))
            continue
        if i2 > i1:
            removed = "".join(w + s for w, s in a[i1:i2])
            runs.append(("del", removed if removed[-1:].isspace() or j2 == j1 else removed + " "))
        if j2 > j1:
            runs.append(("ins", "".join(w + s for w, s in b[j1:j2])))
    return runs
