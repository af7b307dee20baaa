"""RaDialog-style correction: the head's output turned into the radiologist's calls, the draft written
again from them (template rendering and the reference bundle's real decoder), stored on its own row
without touching the draft, and the word diff the workstation shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libs.auth.principal import Principal
from libs.core.config import Settings
from libs.domain.feedback import FindingCorrection
from libs.domain.request import ReportRequest
from libs.domain.study import View
from libs.feedback import corrections
from libs.feedback.record import NotAssessed
from libs.labeler import label_report
from libs.pipeline.context import PipelineContext
from libs.qa.laterality import ImageInfo
from libs.reporting.render import render_report
from libs.storage import crud
from libs.storage.db import session_scope
from libs.storage.models import ReportCorrectionRow
from tests.reporting.helpers import model_output

REFERENCE = Path(__file__).resolve().parents[2] / "models" / "reference"
PA = ImageInfo(width=1000, view=View.PA)
RADIOLOGIST = Principal(kind="apikey", id="k1", name="Dr Test", scopes=frozenset({"user/DiagnosticReport.rus"}))


def test_corrected_output_makes_each_call_certain_and_keeps_the_rest() -> None:
    out = model_output({"Pleural Effusion": 0.3, "Cardiomegaly": 0.8}, boxes={"Cardiomegaly": [1, 2, 3, 4]},
                       text="old text")
    fixed = corrections.corrected_output(out, [FindingCorrection(observation="Pleural Effusion", present=True),
                                               FindingCorrection(observation="Cardiomegaly", present=False)])
    assert fixed.prediction("Pleural Effusion").positive and fixed.prediction("Pleural Effusion").probability == 1.0
    cardio = fixed.prediction("Cardiomegaly")
    assert not cardio.positive and cardio.probability == 0.0 and cardio.bounding_box is None
    assert fixed.prediction("Edema").probability == out.prediction("Edema").probability
    assert fixed.text is None  # the old text was written for the old calls
    assert out.prediction("Cardiomegaly").positive  # the head's output itself is unchanged


def test_asserted_calls_give_the_side_and_severity_and_no_model_confidence() -> None:
    # The box is on the image's left = the patient's right; the radiologist says left, moderate.
    out = model_output({"Pleural Effusion": 0.3}, boxes={"Pleural Effusion": [50, 500, 300, 900]})
    call = FindingCorrection(observation="Pleural Effusion", present=True, laterality="left", severity="moderate")
    fixed = corrections.corrected_output(out, [call])
    report = render_report("j", "1.2", fixed, ReportRequest(report_template="standard"), image=PA,
                           asserted={"Pleural Effusion": call})
    (finding,) = report.findings
    assert (finding.laterality, finding.severity) == ("left", "moderate")
    assert finding.bounding_box is None  # it marked the other side
    assert "left" in report.findings_text.lower() and "moderate" in report.findings_text.lower()
    assert "%" not in report.findings_text and "confidence" not in report.findings_text.lower()
    read = label_report(f"{report.findings_text}\n{report.impression}")
    assert read.observations["Pleural Effusion"].status.value == "positive"


def test_word_diff_marks_removed_and_added_words() -> None:
    before, after = "No pleural effusion.\nHeart normal.", "Small left pleural effusion.\nHeart normal."
    runs = corrections.word_diff(before, after)
    assert "".join(t for op, t in runs if op != "ins").split() == before.split()
    assert "".join(t for op, t in runs if op != "del") == after  # the new text, line breaks and all
    assert runs[:2] == [("del", "No "), ("ins", "Small left ")]
    # A removed run never runs into the added one ("Pneumonia." + "No" must not read "Pneumonia.No").
    runs = corrections.word_diff("Pneumonia.", "No pneumonia.")
    assert runs == [("del", "Pneumonia. "), ("ins", "No pneumonia.")]
    assert corrections.word_diff("same  words", "same words") == [("same", "same words")]


def _reviewed_job(ctx: PipelineContext, output, image: np.ndarray) -> str:
    """A reviewed job as the pipeline leaves it (the preprocessed image kept), without running the pipeline."""
    request = ReportRequest(clinical_context={"age": 70, "sex": "F", "indication": "dyspnoea"})
    with session_scope(ctx.engine) as session:
        job, _ = crud.create_job(session, "1.2.826.0.1.3680043.8.498.1", request, idempotency_key="k-1")
        job_id = job.id
    path = ctx.settings.preprocessed_dir / f"{job_id}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, image)
    report = render_report(job_id, "1.2.826.0.1.3680043.8.498.1", output, request, image=None)
    with session_scope(ctx.engine) as session:
        from libs.storage.models import JobRow

        row = session.get(JobRow, job_id)
        row.state, row.image_path = "reviewed", str(path)
        row.model_output, row.report = output.model_dump(mode="json"), report.model_dump(mode="json")
    return job_id


@pytest.fixture
def reference_ctx(tmp_path: Path) -> PipelineContext:
    settings = Settings(data_dir=tmp_path / "data", database_url=None, queue_backend="inprocess",
                        bundle_path=REFERENCE, image_size=224)
    return PipelineContext.from_settings(settings)


def test_the_reference_decoder_writes_the_draft_again_from_the_corrected_calls(reference_ctx: PipelineContext) -> None:
    ctx = reference_ctx
    image = np.random.default_rng(0).random((224, 224), dtype=np.float32)
    output = ctx.runner.predict(image[None])[0]
    label = "Pneumonia"  # what the reference bundle assesses (its model card)
    head = output.prediction(label)
    assert head.assessed
    wanted = not head.positive  # flip the head's call, whichever it was
    job_id = _reviewed_job(ctx, output, image)
    report_id = f"rpt-{job_id}"
    with pytest.raises(ValueError, match="no finding was corrected"):
        corrections.request(ctx.engine, report_id, [], RADIOLOGIST)
    pending = corrections.request(ctx.engine, report_id,
                                  [FindingCorrection(observation=label, present=wanted)], RADIOLOGIST)
    assert pending.state == corrections.PENDING and pending.draft is None
    done = corrections.regenerate(pending.id, ctx)
    assert done.state == corrections.DONE and done.text_from_model is True, done.error
    assert done.draft.text_grounding is not None  # the decoder's text went through the grounding
    read = label_report(f"{done.draft.findings_text}\n{done.draft.impression}")
    status = read.observations.get(label)
    if wanted:
        assert label in {f.label for f in done.draft.findings}
        assert status is not None and status.status.value == "positive"
    else:
        assert label not in {f.label for f in done.draft.findings}
        assert status is None or status.status.value != "positive"
    # Run again (a redelivered message): the stored result, not a second regeneration.
    assert corrections.regenerate(pending.id, ctx).draft == done.draft
    with session_scope(ctx.engine) as session:
        from libs.storage.models import JobRow

        job = session.get(JobRow, job_id)
        assert job.report["findings_text"] != done.draft.findings_text  # the draft stays; the call differs
        assert ReportRequest.model_validate(job.request).clinical_context.age == 70
        assert session.get(ReportCorrectionRow, pending.id).corrections == [
            {"observation": label, "present": wanted, "laterality": None, "severity": None}]


def test_a_correction_names_only_what_the_report_assessed_and_failures_are_stored(reference_ctx: PipelineContext) -> None:
    ctx = reference_ctx
    image = np.random.default_rng(1).random((224, 224), dtype=np.float32)
    output = ctx.runner.predict(image[None])[0]
    job_id = _reviewed_job(ctx, output, image)
    unassessed = next((p.label for p in output.predictions if not p.assessed and p.label != "No Finding"), None)
    if unassessed is not None:
        with pytest.raises(NotAssessed):
            corrections.request(ctx.engine, f"rpt-{job_id}", [FindingCorrection(observation=unassessed, present=True)],
                                RADIOLOGIST)
    pending = corrections.request(ctx.engine, f"rpt-{job_id}",
                                  [FindingCorrection(observation="Pneumonia", present=True)], RADIOLOGIST)
    # The image is gone (preprocessed file removed, no DICOM stored): the row says why.
    Path(ctx.settings.preprocessed_dir / f"{job_id}.npy").unlink()
    failed = corrections.regenerate(pending.id, ctx)
    assert failed.state == corrections.FAILED and "image" in failed.error
    with pytest.raises(corrections.UnknownCorrection):
        corrections.get(ctx.engine, pending.id, job_id="another-job")
