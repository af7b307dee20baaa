"""The context-robustness suite (libs.model.robustness): it catches drafts that follow the context
instead of the head, and the shipped bundle's finished reports pass it under every fixed context."""

from __future__ import annotations

import pytest
from model_helpers import KERMANY_ROOT

from libs.core.config import REPO_ROOT
from libs.domain.context import ClinicalContext
from libs.domain.report import Report
from libs.domain.study import View
from libs.model.robustness import CONTEXTS, passes, summarize_context
from libs.model.serving_eval import HeadResult, ServedReport
from libs.qa.laterality import ImageInfo
from tests.reporting.helpers import model_output

IMAGE = ImageInfo(width=1000, view=View.AP)
CHILD = ClinicalContext(age=3, indication="Fever and cough")
# What bundle 1.2.1 wrote for a head-positive 3-year-old (issue 13): normal, degenerative, interval.
CONTEXT_DRIVEN = ("In the interval, the right lung remains clear. The lungs are free of focal airspace disease. "
                  "Degenerative changes are present in the spine. No pneumothorax.")


def _assessed_only_pneumonia(p: float):
    from libs.domain.labels import CHEXPERT_LABELS

    return model_output({"Pneumonia": p}, not_assessed=set(CHEXPERT_LABELS) - {"Pneumonia"}, threshold=0.5)


def _served(report: Report, p: float, raw: str | None = None) -> ServedReport:
    head = HeadResult(name="x.png", output=_assessed_only_pneumonia(p), image=IMAGE, rows=1000)
    return ServedReport(head=head, context=CHILD, raw_text=raw, report=report)


def _report(findings_text: str, impression: str) -> Report:
    return Report(report_id="r", study_id="s", findings=[], findings_text=findings_text, impression=impression,
                  recommendations="", model_version="t")


def test_the_suite_counts_every_kind_of_violation() -> None:
    bad = _served(_report(CONTEXT_DRIVEN, "No acute cardiopulmonary disease."), 0.95, raw=CONTEXT_DRIVEN)
    s = summarize_context([bad])
    assert s["agreement"] == 0.0  # pneumonia is positive, the text never says it
    assert s["contradictions"] == 1  # "no acute disease" while the head found pneumonia
    assert s["problems"]["global_normal"] >= 1
    # "no pneumothorax", "free of focal airspace disease" (lung opacity) from a Pneumonia-only head
    assert s["problems"]["unassessed"] >= 2
    assert s["problems"]["outside"] >= 1 and s["unsupported"] >= 2
    assert s["age_inappropriate"] == 1  # degenerative spine at 3
    assert s["interval"] >= 1  # "in the interval", "remains" without a prior
    assert s["raw"]["positives_stated"] == 0.0
    assert not passes({"ctx": s})


def test_a_grounded_draft_of_the_same_text_passes() -> None:
    from libs.domain.request import ReportRequest
    from libs.qa.review import review_report
    from libs.reporting.render import render_report

    output = _assessed_only_pneumonia(0.95).model_copy(update={"text": CONTEXT_DRIVEN})
    request = ReportRequest(clinical_context=CHILD)
    report = render_report("j", "s", output, request, image=IMAGE)
    report = report.model_copy(update={"qa": review_report(report, output, request, image=IMAGE).summary()})
    s = summarize_context([_served(report, 0.95, raw=CONTEXT_DRIVEN)])
    assert s["agreement"] == 1.0 and s["contradictions"] == 0 and s["unsupported"] == 0
    assert s["age_inappropriate"] == 0 and s["interval"] == 0
    assert s["raw"]["age_inappropriate"] == 1  # the raw text still had it: grounding removed it
    assert passes({"ctx": s})


def test_a_negative_study_called_positive_by_the_text_is_a_contradiction() -> None:
    s = summarize_context([_served(_report("There is right lower lobe pneumonia.", "Pneumonia."), 0.1)])
    assert s["agreement"] == 0.0 and s["contradictions"] == 1 and s["problems"]["contradicts_head"] >= 1


def test_the_shipped_bundle_passes_under_every_context() -> None:
    from libs.bundle.runner import BundleRunner
    from libs.model.robustness import run_suite
    from libs.model.serving_eval import run_heads

    films = sorted((KERMANY_ROOT / "images").glob("*.png"))
    if len(films) < 100:
        pytest.fail(f"Kermany images missing under {KERMANY_ROOT}")
    picked = [str(p) for p in films[:: len(films) // 12][:12]]
    runner = BundleRunner(REPO_ROOT / "models" / "reference", ["CPUExecutionProvider"])
    summary = run_suite(runner, run_heads(runner, picked), CONTEXTS)
    assert set(summary) == set(CONTEXTS)
    assert 0 < summary["none"]["head_positive"] < 12  # both kinds of film are in the sample
    assert passes(summary), summary
