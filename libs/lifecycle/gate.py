"""The validation gate: a registered model on held-out studies, through the platform's own path (the
runner, the report renderer and QA), before it may serve anyone.

Measured and stored as the gate's report (model_versions.validation):
- sensitivity (and specificity) of the head on each gated observation, with 95 % Wilson intervals; the gate
  needs the point estimate >= `gate_sensitivity_min` on every gated observation. Gated: `gate_labels`, by
  default the critical findings. An observation the model does not assess, or that no held-out study is
  labelled positive for, is NOT measured, and an unmeasured gated observation fails the gate: no evidence
  is not good evidence;
- the hallucination rate: the share of drafts in which QA finds an assessed observation stated that the
  head did not see (libs/qa/review.py); the gate needs it <= `gate_hallucination_max`;
- the drift reference: the held-out studies' embeddings, probabilities and metadata, what drift monitoring
  compares served studies with (libs/lifecycle/drift.py), written beside the registry copy.
"""

from __future__ import annotations

import datetime as dt
import numpy as np

from libs.core.config import Settings
from libs.domain.labels import CRITICAL_LABELS
from libs.lifecycle import drift, registry
from libs.lifecycle.heldout import HeldOutItem, load_images
from libs.lifecycle.stats import proportion


def gated_labels(settings: Settings) -> list[str]:
    return sorted(settings.gate_labels) if settings.gate_labels else sorted(CRITICAL_LABELS)


def run_model(runner, items: list[HeldOutItem], with_text: bool = True):  # noqa: ANN001, ANN201
    """(ModelOutputs, embeddings or None, Reports) of the runner on the items, in batches, with each item's
    age and sex as clinical context; reports rendered and reviewed by QA as the pipeline does."""
    from libs.domain.context import ClinicalContext
    from libs.domain.request import ReportRequest
    from libs.lifecycle.trial import reviewed_draft

    size = runner.image_size
    step = max(1, runner.manifest.batching.max_batch_size)
    outputs, embeddings, reports = [], [], []
    for start in range(0, len(items), step):
        chunk = items[start:start + step]
        contexts = [ClinicalContext(age=int(i.age) if i.age is not None and 0 <= i.age <= 130 else None,
                                    sex=i.meta.get("sex") if i.meta.get("sex") in ("M", "F", "O", "U") else None)
                    for i in chunk]
        out, emb = runner.predict_and_embed(load_images(chunk, size), contexts, generate=with_text)
        outputs += out
        if emb is not None:
            embeddings.append(emb)
        for n, (o, ctx) in enumerate(zip(out, contexts, strict=True)):
            request = ReportRequest(clinical_context=ctx.model_dump(exclude_none=True) or None)
            reports.append(reviewed_draft(f"gate-{start + n}", "2.25.0", o, request))
    return outputs, (np.concatenate(embeddings) if embeddings else None), reports


def evaluate(settings: Settings, model: registry.ModelVersion, items: list[HeldOutItem], source: str) -> dict:
    """The gate's report for `model` on `items` (nothing stored)."""
    from libs.bundle.runner import BundleRunner

    runner = BundleRunner(registry.verified_path(model), cache_dir=settings.data_dir / "provider-cache")
    outputs, embeddings, reports = run_model(runner, items)
    per_label, failures = {}, []
    for label in gated_labels(settings):
        assessed = all(o.prediction(label).assessed for o in outputs)
        positives = [o.prediction(label).positive for o, it in zip(outputs, items, strict=True) if it.labels.get(label) == 1]
        negatives = [o.prediction(label).positive for o, it in zip(outputs, items, strict=True) if it.labels.get(label) == 0]
        sens, spec = proportion(sum(positives), len(positives)), proportion(len(negatives) - sum(negatives), len(negatives))
        entry = {"assessed": assessed, "sensitivity": sens.as_dict(), "specificity": spec.as_dict()}
        if not assessed:
            failures.append(f"{label}: not assessed by this model")
        elif not positives:
            failures.append(f"{label}: no held-out study is labelled positive, sensitivity not measured")
        elif sens.value < settings.gate_sensitivity_min:
            failures.append(f"{label}: sensitivity {sens.value:.3f} < {settings.gate_sensitivity_min:.3f}")
        per_label[label] = entry
    hallucinated = proportion(sum(1 for r in reports if r.qa and r.qa.hallucination_count), len(reports))
    if hallucinated.value is not None and hallucinated.value > settings.gate_hallucination_max:
        failures.append(f"hallucination rate {hallucinated.value:.3f} > {settings.gate_hallucination_max:.3f}")
    reference = drift.write_reference(model, items, outputs, embeddings)
    return {
        "passed": not failures, "failures": failures, "model": model.id, "held_out": source, "studies": len(items),
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "thresholds": {"sensitivity_min": settings.gate_sensitivity_min,
                       "hallucination_max": settings.gate_hallucination_max, "labels": gated_labels(settings)},
        "sensitivity": per_label, "hallucination_rate": hallucinated.as_dict(),
        "text_from_model": runner.has_decoder, "drift_reference": str(reference),
    }


def validate(engine, settings: Settings, model_id: str, items: list[HeldOutItem], source: str, actor: str) -> dict:  # noqa: ANN001
    """Runs the gate and stores its report on the model (every run; the latest counts)."""
    model = registry.get(engine, model_id)
    report = evaluate(settings, model, items, source)
    registry.store_validation(engine, model_id, report, actor)
    return report
