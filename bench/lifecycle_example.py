"""`make lifecycle-example`: the model lifecycle end to end, for real, in one process (SQLite, the
in-process queue), written to bench/results/lifecycle-example.md (docs/lifecycle.md quotes a run).

1. The reference bundle is registered, passes its validation gate on a random half of the Kermany
   validation split (the gate on Pneumonia: the only observation it assesses), and becomes production.
2. A candidate: the same weights with the Pneumonia threshold lowered to `CANDIDATE_THRESHOLD` (the kind of
   change a hospital makes to trade specificity for sensitivity), registered as its own version, gated,
   put in shadow and then in a 50 % canary (the default share is 10 %; half gives both arms enough
   studies in one short run).
3. The other half of the validation films are served as studies (wrapped as DICOM, through every
   pipeline step). Radiologist feedback is stood in for by the Kermany label (pneumonia or not): a draft
   whose call matches is accepted, one that does not is edited with the corrected call. This is the one
   simulated part; everything else is the platform's own code on real images.
4. The canary comparison decides; the decision is acted on (promote, roll back, or hold: the canary goes on).
5. Drift: the served studies against the production model's reference (expected quiet), then the same
   studies under-exposed (gamma 2), through the same check (expected to alarm).
6. The bias audit from the feedback.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from libs.core.config import REPO_ROOT, Settings
from libs.domain.labels import CHEXPERT_LABELS

OUT = REPO_ROOT / "bench" / "results" / "lifecycle-example.md"
CANDIDATE_THRESHOLD = 0.5
SERVED = 300  # studies served during the canary


def _candidate_bundle(workdir: Path) -> Path:
    dest = workdir / "candidate"
    shutil.copytree(REPO_ROOT / "models" / "reference", dest, ignore=shutil.ignore_patterns("source"))
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["version"] = f"{manifest['version']}-t{int(CANDIDATE_THRESHOLD * 100)}"
    manifest["thresholds"] = {k: CANDIDATE_THRESHOLD for k in manifest["thresholds"]}
    manifest["description"] = f"{manifest.get('description', '')} Pneumonia threshold {CANDIDATE_THRESHOLD}.".strip()
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return dest


def main() -> int:  # noqa: PLR0915 - one story, told in order
    from libs.auth.principal import Principal
    from libs.dicom.wrap import write_wrapped
    from libs.domain.feedback import FeedbackIn, FindingCorrection
    from libs.domain.request import ReportRequest
    from libs.feedback.record import record
    from libs.lifecycle import bias, canary, drift, gate, registry
    from libs.lifecycle.heldout import load_heldout
    from libs.pipeline.context import PipelineContext
    from libs.pipeline.embedded import run_study
    from libs.storage.db import session_scope
    from libs.storage.models import DriftSampleRow

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="cxr-lifecycle-"))
    settings = Settings(data_dir=workdir / "data", database_url=None, queue_backend="inprocess",
                        gate_labels=["Pneumonia"], shadow_min_hours=0, canary_share=0.5, canary_min_feedback=30)
    ctx = PipelineContext.from_settings(settings)
    engine = ctx.engine
    out: list[str] = ["# Model lifecycle: a worked example (make lifecycle-example)", "",
                      f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this machine; every number below "
                      "is from that run. Radiologist feedback is the one simulated part: the Kermany label (pneumonia "
                      "or not) stands in for the reader's call.", ""]

    everything = load_heldout("kermany-val")
    held_out = load_heldout("kermany-val", limit=len(everything) // 2, seed=0)
    chosen = {i.path for i in held_out}
    rest = [i for i in everything if i.path not in chosen]
    # In a random order: the split file lists normal films first, and a served mix of mostly normal films
    # is a real prior shift (label drift and the embedding both alarm on it), not what this step shows.
    served_items = [rest[i] for i in np.random.default_rng(0).permutation(len(rest))[:SERVED]]

    production = registry.register(engine, settings, REPO_ROOT / "models" / "reference", "example").id
    report = gate.validate(engine, settings, production, held_out, f"kermany-val, random half ({len(held_out)})", "example")
    sens = report["sensitivity"]["Pneumonia"]["sensitivity"]
    out += ["## 1. Production: the reference bundle", "",
            f"Validation gate on {report['studies']} held-out films: Pneumonia sensitivity "
            f"{sens['value']:.3f} (95 % CI {sens['ci95'][0]:.3f}–{sens['ci95'][1]:.3f}), hallucination rate "
            f"{report['hallucination_rate']['value']:.3f}; gate {'passed' if report['passed'] else 'FAILED: ' + '; '.join(report['failures'])} "
            f"(needs ≥ {settings.gate_sensitivity_min} and ≤ {settings.gate_hallucination_max}).", ""]
    if not report["passed"]:
        out += ["The gate failed, so the example stops here: nothing that fails it may serve."]
        OUT.write_text("\n".join(out) + "\n")
        print("\n".join(out))
        return 1
    registry.promote(engine, settings, production, "production", "example", "the first model")

    candidate = registry.register(engine, settings, _candidate_bundle(workdir), "example").id
    c_report = gate.validate(engine, settings, candidate, held_out, f"kermany-val, random half ({len(held_out)})", "example")
    c_sens, c_spec = (c_report["sensitivity"]["Pneumonia"][k] for k in ("sensitivity", "specificity"))
    p_spec = report["sensitivity"]["Pneumonia"]["specificity"]
    out += [f"## 2. Candidate {candidate}", "",
            f"Threshold {CANDIDATE_THRESHOLD} instead of the reference's. Gate: sensitivity {c_sens['value']:.3f} "
            f"(production {sens['value']:.3f}), specificity {c_spec['value']:.3f} (production {p_spec['value']:.3f}); "
            f"{'passed' if c_report['passed'] else 'FAILED'}.", ""]
    if not c_report["passed"]:
        OUT.write_text("\n".join(out) + "\n")
        return 1
    registry.promote(engine, settings, candidate, "shadow", "example", "monthly candidate")
    registry.promote(engine, settings, candidate, "canary", "example", "shadow done (0 h in this example)")

    reader = Principal(kind="apikey", id="example-reader", name="Kermany label", scopes=frozenset({"user/DiagnosticReport.rus"}))
    dicom_dir = workdir / "studies"
    serve_started = time.perf_counter()
    for n, item in enumerate(served_items):
        path = write_wrapped(item.path, dicom_dir / f"{n}.dcm", view="AP")
        result = run_study(ctx, [path], ReportRequest())
        truth = bool(item.labels["Pneumonia"])
        shown = next(o.present for o in result.report.observations if o.label == "Pneumonia")
        call = [FindingCorrection(observation="Pneumonia", present=truth)]
        if shown == truth:
            body = FeedbackIn(decision="accepted", corrections=call)
        else:
            final = "Findings consistent with pneumonia.\n\nPneumonia." if truth else "No pneumonia.\n\nNo pneumonia."
            body = FeedbackIn(decision="edited", final_text=final, corrections=call)
        record(engine, result.report.report_id, body, reader)
    serve_s = time.perf_counter() - serve_started
    comparison = canary.compare(engine, settings, candidate)
    registry.store_comparison(engine, candidate, comparison, "example")
    out += [f"## 3. Canary: {SERVED} studies served, 50 % share", "",
            f"{serve_s:.0f} s for {SERVED} studies through every step, each also run through the other arm's model.", "",
            canary.markdown(comparison).replace("# Canary", "### Canary"), ""]
    if comparison["decision"] == "promote":
        registry.promote(engine, settings, candidate, "production", "example", comparison["why"])
        out += [f"## 4. Promoted: {candidate} is production", ""]
    elif comparison["decision"] == "rollback":
        registry.rollback(engine, settings, "example", comparison["why"])
        out += ["## 4. Rolled back: production serves every study again", ""]
    else:
        out += ["## 4. Held: the canary goes on (no decision yet)", ""]

    # Drift: the served studies against the model that served most of them.
    model = registry.get(engine, production)
    with session_scope(engine) as db:
        rows = list(db.scalars(select(DriftSampleRow)))
    samples = [r for r in rows if r.model_id == production]
    ref = drift.load_reference(drift.reference_path(model))
    emb = np.array([r.embedding for r in samples], dtype=np.float32)
    probs = np.array([[r.probabilities.get(label, np.nan) for label in CHEXPERT_LABELS] for r in samples])
    meta = {f: [r.meta.get(f) for r in samples] for f in ("view", "manufacturer", "sex", "age", "pixel_spacing")}
    quiet = drift.check(ref, emb, probs, meta, settings.drift_alpha, settings.drift_permutations)
    from libs.bundle.runner import BundleRunner
    from libs.lifecycle.heldout import load_images

    runner = BundleRunner(model.path)
    images = load_images([served_items[i] for i in range(len(samples))], runner.image_size) ** 2
    shifted_out, shifted_emb = runner.predict_and_embed(images.astype(np.float32), generate=False)
    shifted_probs = drift.probabilities_of(shifted_out)
    shifted = drift.check(ref, shifted_emb, shifted_probs, meta, settings.drift_alpha, settings.drift_permutations)
    out += ["## 5. Drift", "", f"{len(samples)} studies served by {production} against its validation reference "
            f"({settings.drift_permutations} permutations, alarm below p = {settings.drift_alpha}, Bonferroni within a family):", "",
            "| signal | as served: p | alarm | under-exposed (gamma 2): p | alarm |", "|---|---|---|---|---|"]
    by_signal = {c.signal: c for c in shifted}
    for c in quiet:
        s = by_signal.get(c.signal)
        out.append(f"| {c.signal} | {c.p_value:.3g} | {'yes' if c.alarm else 'no'} | "
                   f"{s.p_value:.3g} | {'yes' if s.alarm else 'no'} |" if s else f"| {c.signal} | {c.p_value:.3g} | "
                   f"{'yes' if c.alarm else 'no'} | — | — |")
    audit = bias.audit(bias.from_feedback(engine, 30), settings, "the example's feedback")
    out += ["", "## 6. Bias audit", "", "Kermany films carry no age or sex, so only the view (all AP) forms a group "
            "here; with a hospital's feedback the table has age bands, sex, view and manufacturer.", "",
            bias.markdown(audit).split("\n", 2)[2], "## History", "", "```"]
    for e in registry.events(engine):
        out.append(f"{e.model_id:28s} {e.action:9s} {e.from_state or '-':>10s} -> {e.to_state or '-':10s} {e.reason[:90]}")
    out += ["```", "", f"Whole run: {time.perf_counter() - started:.0f} s."]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(out) + "\n", encoding="utf-8")
    print("\n".join(out))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
