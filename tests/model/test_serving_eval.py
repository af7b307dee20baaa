"""`cxr-report evaluate` measures the image side through the serving path (libs.model.serving_eval):
its reports are the ones the embedded pipeline (`cxr-report run`: intake, DB, queue, steps) writes for
the same files, number for number and word for word. Uses the shipped bundle and real Kermany films."""

from __future__ import annotations

import numpy as np
import pytest
from model_helpers import KERMANY_ROOT

from libs.core.config import REPO_ROOT, Settings
from libs.domain.context import ClinicalContext
from libs.domain.request import ReportRequest
from libs.model.serving_eval import report_heads, run_heads

BUNDLE = REPO_ROOT / "models" / "reference"
CONTEXT = ClinicalContext(age=3, sex="M", indication="Fever and cough")


def _films(n_each: int = 10) -> list[str]:
    pneumonia = sorted((KERMANY_ROOT / "images").glob("*PNEUMONIA*.png"))
    normal = sorted((KERMANY_ROOT / "images").glob("*NORMAL*.png"))
    if len(pneumonia) < n_each or len(normal) < n_each:
        pytest.fail(f"Kermany images missing under {KERMANY_ROOT}")
    step_p, step_n = len(pneumonia) // n_each, len(normal) // n_each
    return [str(p) for p in pneumonia[::step_p][:n_each] + normal[::step_n][:n_each]]


@pytest.fixture(scope="module")
def runner():
    from libs.bundle.runner import BundleRunner

    return BundleRunner(BUNDLE, ["CPUExecutionProvider"])


def test_serving_eval_gives_the_embedded_pipelines_reports(tmp_path, runner) -> None:
    from libs.dicom.wrap import write_wrapped
    from libs.pipeline.context import PipelineContext
    from libs.pipeline.embedded import run_study

    films = _films()
    served = report_heads(runner, run_heads(runner, films, batch_size=8), CONTEXT)
    settings = Settings(data_dir=tmp_path / "var", bundle_path=BUNDLE, queue_backend="inprocess", batching=False)
    ctx = PipelineContext.from_settings(settings)
    request = ReportRequest(clinical_context=CONTEXT)
    positives = 0
    for i, (film, ours) in enumerate(zip(films, served, strict=True)):
        dcm = write_wrapped(film, tmp_path / "in" / f"{i}.dcm")
        result = run_study(ctx, [dcm], request)
        assert result.report is not None, result.error
        theirs = result.report
        p_ours = ours.head.output.prediction("Pneumonia").probability
        # batch of 8 vs batch of 1 through the same INT8 graph: equal to float32 rounding
        job_conf = {f.label: f.confidence for f in theirs.findings}
        if ours.report.findings:
            positives += 1
            assert abs(job_conf["Pneumonia"] - round(p_ours, 4)) < 2e-4
        assert [f.model_dump() for f in ours.report.findings] == [f.model_dump() for f in theirs.findings]
        assert ours.report.findings_text == theirs.findings_text
        assert ours.report.impression == theirs.impression
        assert ours.report.review_reasons == theirs.review_reasons
        assert ours.report.text_grounding == theirs.text_grounding
    assert 0 < positives < len(films)  # both kinds of report were compared


def test_heads_read_wrapped_films_like_ingestion(tmp_path, runner) -> None:
    """run_heads's probabilities are those of the files read by ingestion's load_for_model one by one."""
    from libs.dicom import load_for_model
    from libs.dicom.wrap import write_wrapped

    films = _films(3)
    heads = run_heads(runner, films, batch_size=4)
    single = []
    for i, film in enumerate(films):
        _, pre = load_for_model(write_wrapped(film, tmp_path / f"{i}.dcm"), size=runner.image_size)
        out = runner.predict_and_embed(pre.array[None].astype(np.float32), generate=False)[0][0]
        single.append(out.prediction("Pneumonia").probability)
    ours = [h.output.prediction("Pneumonia").probability for h in heads]
    assert np.allclose(ours, single, atol=1e-5)
    assert all(h.image is not None and h.image.width == h.rows == 224 for h in heads)
