"""`cxr-report evaluate`: the shipped bundle (INT8 ONNX) and three baselines on the same splits.

Report side, IU/Open-i test split (report ids from configs/splits/iu_reports.json), two conditions:
  A "reference labels": the prompt carries the clinical context and all 14 labels of the reference
    report (labeler statuses). This is the condition of the issue's goals (B4 >= 0.20, ROUGE-L >= 0.40).
    It is NOT the condition of published image-to-report IU numbers (B4 0.165-0.173): those models see
    only the image, this decoder is told the findings.
  B "bundle": what the shipped bundle can know: context + only the assessed labels, each score drawn from
    the INT8 encoder's own validation scores for the reference class (the head's real error rates).
Image side, Kermany patient-grouped validation split: detection AUROC (95 % CI by patient bootstrap),
the operating point, calibration (reliability before/after Platt), and end-to-end generated text
(labelled back by the project's labeler) against the image label.

Baselines on the same inputs: constant normal report (the most frequent training report), template
filling from the labels (libs.reporting.phrases wording), nearest-neighbour retrieval (a training report
with the closest label vector; ties -> its most frequent text).
Metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr (libs.model.nlg), clinical efficacy P/R/F1
(libs.labeler.metrics), error categories (missed / hallucinated / laterality / severity), a bias table by
age band and sex, all with 95 % bootstrap CIs where stated. Writes evaluation.json, evaluation.md and
PNG plots into <bundle_dir>/eval (or --out) and a summary into the manifest's metrics.evaluation.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np

from libs.domain.labels import ABNORMAL_LABELS, CHEXPERT_LABELS, CRITICAL_LABELS
from libs.model.config import TrainConfig

SYSTEMS = ("model", "constant_normal", "template", "retrieval")
AGE_BANDS = ((0, 40, "<40"), (40, 60, "40-59"), (60, 200, "60+"))


# -- baselines --------------------------------------------------------------------------------------

def _decisions(findings: list[tuple[str, float, bool]]) -> dict[str, bool]:
    return {label: pos for label, _, pos in findings}


def template_report(decisions: dict[str, bool]) -> str:
    """Template filling from labels: a sentence per positive label, normal sentences for the rest of
    the standard checklist (heart, lungs, pleura), then an impression."""
    from libs.reporting.phrases import PHRASES

    positives = [label for label in ABNORMAL_LABELS if decisions.get(label)]
    sentences = [f"There is {PHRASES[label].noun}." for label in positives]
    if not decisions.get("Cardiomegaly"):
        sentences.insert(0, "The heart size is normal.")
    lung = ("Lung Opacity", "Consolidation", "Pneumonia", "Edema", "Atelectasis", "Lung Lesion")
    if not any(decisions.get(label) for label in lung):
        sentences.append("The lungs are clear.")
    if not decisions.get("Pleural Effusion") and not decisions.get("Pneumothorax"):
        sentences.append("No pleural effusion or pneumothorax.")
    impression = (", ".join(PHRASES[label].noun for label in positives).capitalize() + ".") if positives else \
        "No acute cardiopulmonary abnormality."
    return " ".join(sentences + [impression])


class Retrieval:
    """Nearest training report by label decisions (Hamming distance over the labels the query has)."""

    def __init__(self, train_records):
        from libs.model.prompts import reference_findings

        self.texts = [r.text for r in train_records]
        self.decisions = [_decisions(reference_findings(r.statuses)) for r in train_records]
        self.freq = Counter(self.texts)
        self._cache: dict = {}

    def __call__(self, query: dict[str, bool]) -> str:
        key = tuple(sorted(query.items()))
        if key not in self._cache:
            dist = np.asarray([sum(d.get(k, False) != v for k, v in query.items()) for d in self.decisions])
            best = np.flatnonzero(dist == dist.min())
            self._cache[key] = max((self.texts[i] for i in best), key=lambda t: (self.freq[t], -self.texts.index(t)))
        return self._cache[key]


def constant_normal_report(train_records) -> str:
    normal = [r.text for r in train_records if r.statuses.get("No Finding") == "positive"] or [r.text for r in train_records]
    return Counter(normal).most_common(1)[0][0]


# -- clinical scoring ---------------------------------------------------------------------------------

def _label_all(texts: list[str]):
    from libs.labeler.labeler import label_reports

    return label_reports(texts)


def clinical_scores(gen_results, ref_results, bootstrap: int, seed: int = 0) -> dict:
    from libs.labeler.metrics import positive_set, score_label_sets

    pred = [positive_set(r) for r in gen_results]
    truth = [positive_set(r) for r in ref_results]
    scores = score_label_sets(pred, truth)
    # per-report tp/fp/fn over the 14 labels for the micro-F1 CI
    counts = np.asarray([[len(p & t), len(p - t), len(t - p)] for p, t in zip(pred, truth)], dtype=np.float64)
    errors = error_categories(gen_results, ref_results)
    out = {"micro": scores["micro"], "macro": scores["macro"], "macro_over": scores["macro_over"],
           "per_observation": {k: {m: v[m] for m in ("precision", "recall", "f1", "support", "predicted")}
                               for k, v in scores["per_observation"].items()},
           "errors": errors["totals"], "errors_per_report": errors["per_report"]}
    crit = {k: scores["per_observation"][k] for k in CRITICAL_LABELS}
    tp = sum(v["tp"] for v in crit.values())
    fn = sum(v["fn"] for v in crit.values())
    out["critical_sensitivity"] = {"value": tp / (tp + fn) if tp + fn else None, "tp": tp, "fn": fn,
                                   "labels": sorted(CRITICAL_LABELS)}
    if bootstrap and len(counts) > 1:
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(bootstrap):
            s = counts[rng.integers(0, len(counts), len(counts))].sum(axis=0)
            vals.append(2 * s[0] / max(2 * s[0] + s[1] + s[2], 1))
        out["micro_f1_ci95"] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]
    return out


def error_categories(gen_results, ref_results) -> dict:
    """missed (reference positive, generated not), hallucinated (generated positive, reference not),
    laterality / severity (both positive, both state it, they differ), over the 13 abnormal labels."""
    from libs.labeler.types import Status

    totals = Counter()
    by_label: dict[str, Counter] = {label: Counter() for label in ABNORMAL_LABELS}
    for g, r in zip(gen_results, ref_results):
        for label in ABNORMAL_LABELS:
            go, ro = g.observations[label], r.observations[label]
            gp, rp = go.status is Status.POSITIVE, ro.status is Status.POSITIVE
            kind = None
            if rp and not gp:
                kind = "missed"
            elif gp and not rp:
                kind = "hallucinated"
            elif gp and rp:
                if go.laterality and ro.laterality and go.laterality != ro.laterality:
                    kind = "laterality"
                elif go.severity and ro.severity and go.severity != ro.severity:
                    kind = "severity"
            if kind:
                totals[kind] += 1
                by_label[label][kind] += 1
    n = max(len(ref_results), 1)
    kinds = ("missed", "hallucinated", "laterality", "severity")
    return {"totals": {k: int(totals[k]) for k in kinds}, "per_report": {k: totals[k] / n for k in kinds},
            "by_label": {label: dict(c) for label, c in by_label.items() if c}}


# -- helpers ------------------------------------------------------------------------------------------

def _age_band(age):
    if age is None:
        return "unknown"
    for lo, hi, name in AGE_BANDS:
        if lo <= age < hi:
            return name
    return "unknown"


def _generate(decoder, prompts: list[str], progress: bool, desc: str, batch: int = 8) -> list[str]:
    """Texts for the distinct prompts, decoded `batch` at a time as the inference service does."""
    from tqdm import tqdm

    unique = list(dict.fromkeys(prompts))
    cache: dict[str, str] = {}
    with tqdm(total=len(unique), disable=not progress, leave=False, desc=desc) as bar:
        for i in range(0, len(unique), batch):
            chunk = unique[i : i + batch]
            for p, g in zip(chunk, decoder.generate_many(chunk), strict=True):
                cache[p] = g.text
            bar.update(len(chunk))
    return [cache[p] for p in prompts]


def bias_table(records, texts: list[str], gen_results, ref_results) -> list[dict]:
    from libs.labeler.metrics import positive_set
    from libs.model.nlg import score_texts

    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(("age", _age_band(r.context.age)), []).append(i)
        groups.setdefault(("sex", r.context.sex or "unknown"), []).append(i)
    rows = []
    for (kind, name), idx in sorted(groups.items()):
        s = score_texts([texts[i] for i in idx], [records[i].text for i in idx], meteor=False, bootstrap=0)
        tp = fp = fn = 0
        ab_tp = ab_fn = ab_fp = ab_tn = 0
        errs = error_categories([gen_results[i] for i in idx], [ref_results[i] for i in idx])
        for i in idx:
            p, t = positive_set(gen_results[i]), positive_set(ref_results[i])
            tp, fp, fn = tp + len(p & t), fp + len(p - t), fn + len(t - p)
            ga, ra = bool(p - {"No Finding"}), bool(t - {"No Finding"})
            ab_tp += ga and ra
            ab_fn += (not ga) and ra
            ab_fp += ga and not ra
            ab_tn += (not ga) and not ra
        rows.append({"group": kind, "value": name, "n": len(idx), "BLEU-4": s["BLEU-4"], "ROUGE-L": s["ROUGE-L"],
                     "ce_micro_f1": 2 * tp / max(2 * tp + fp + fn, 1),
                     "abnormal_tpr": ab_tp / max(ab_tp + ab_fn, 1) if ab_tp + ab_fn else None,
                     "abnormal_fpr": ab_fp / max(ab_fp + ab_tn, 1) if ab_fp + ab_tn else None,
                     "hallucinated_per_report": errs["per_report"]["hallucinated"],
                     "missed_per_report": errs["per_report"]["missed"]})
    return rows


def _score_condition(records, prompts, decisions, model_texts, normal, retrieval, ref_results, bootstrap, seed) -> dict:
    from libs.model.nlg import score_texts

    refs = [r.text for r in records]
    texts = {"model": model_texts, "constant_normal": [normal] * len(records),
             "template": [template_report(d) for d in decisions], "retrieval": [retrieval(d) for d in decisions]}
    systems = {}
    for name, hyps in texts.items():
        gen_results = _label_all(hyps)
        systems[name] = {"nlg": score_texts(hyps, refs, bootstrap=bootstrap, seed=seed),
                         "clinical": clinical_scores(gen_results, ref_results, bootstrap, seed)}
        if name == "model":
            systems[name]["bias"] = bias_table(records, hyps, gen_results, ref_results)
            # Model output only: prompts carry the reports' indication text, and IU text (CC BY-NC-ND) must
            # not be copied into the repository.
            systems[name]["examples"] = [{"report_id": r.report_id, "generated": h}
                                         for r, h in list(zip(records, hyps))[:5]]
    return {"n": len(records), "systems": systems}


def qa_flag_stats(records, findings, texts, thresholds: dict[str, float], name: str, version: str) -> dict:
    """The QA service's review flag on (reference report, model output) pairs: its sensitivity for studies
    whose reference report states a critical finding, and the fraction of studies it sends to review.
    `findings` are the prompts' [(label, probability, positive)]: the labels listed are the ones the head
    assessed (threshold from `thresholds`, 0.5 for labels the bundle does not threshold)."""
    from libs.domain.model_output import LabelPrediction, ModelOutput
    from libs.qa.evaluation import EvalCase, evaluate_qa_flags

    cases = []
    for record, f, text in zip(records, findings, texts):
        scores = {label: p for label, p, _ in f}
        preds = [LabelPrediction(label=label, probability=scores.get(label),
                                 threshold=thresholds.get(label, 0.5) if label in scores else None)
                 for label in CHEXPERT_LABELS]
        cases.append(EvalCase(reference=record.text, output=ModelOutput(model_name=name, model_version=version,
                                                                        predictions=preds, text=text)))
    out = {}
    for key, uncertain in (("stated", False), ("stated_or_possible", True)):
        stats = evaluate_qa_flags(cases, count_uncertain=uncertain).to_dict()
        stats["missed"] = [records[i].report_id for i in stats["missed"]]
        out[key] = stats
    return out


# -- main ---------------------------------------------------------------------------------------------

def evaluate(cfg: TrainConfig, out_dir: Path | None = None, progress: bool = True, bootstrap: int = 1000, *,
             baseline_bundle: Path | None = None, contexts: list[str] | None = None, limit: int | None = None) -> dict:
    """`contexts`: names from libs.model.robustness.CONTEXTS (default all); `limit`: IU test reports used by
    the robustness suite and the comparison with `baseline_bundle` (default 200; the Kermany validation
    images are all used)."""
    from libs.bundle.decoder import ReportDecoder, build_prompt, findings_prompt
    from libs.bundle.manifest import Generation, load_manifest
    from libs.bundle.runner import BundleRunner
    from libs.model import robustness
    from libs.model.calibration import auroc, bootstrap_ci, operating_point, reliability, roc_curve
    from libs.model.export import normalized_images, run_encoder
    from libs.model.images import load_images_cached
    from libs.model.prompts import HeadErrorModel, context_text, reference_findings
    from libs.model.serving_eval import report_heads, run_heads
    from libs.model.train import label_matrix, load_datasets
    from libs.qa.review import qa_text

    bundle = cfg.path(cfg.bundle_dir)
    manifest = load_manifest(bundle)
    names = list(robustness.CONTEXTS) if contexts is None else contexts
    unknown = [n for n in names if n not in robustness.CONTEXTS]
    if unknown:
        raise ValueError(f"unknown context(s) {', '.join(unknown)}; known: {', '.join(robustness.CONTEXTS)}")
    suite_contexts = {n: robustness.CONTEXTS[n] for n in names}
    runner = BundleRunner(bundle, ["CPUExecutionProvider"])
    out_dir = Path(out_dir) if out_dir else bundle / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_datasets(cfg)
    result: dict = {"bundle": {"name": manifest.name, "version": manifest.version, "path": str(bundle)},
                    "assessed_labels": manifest.assessed_labels, "bootstrap_resamples": bootstrap}
    norm = manifest.input.normalization.model_dump()
    cache = cfg.path(cfg.data.cache_dir)
    rng = random.Random(cfg.seed)

    # ---- image side
    val_imgs = data.images_in("val")
    head = None
    probs = None
    heads = []
    if val_imgs:
        # The platform's own path: wrapped as DX DICOM, validated as intake does, read by ingestion, run by
        # the bundle runner in batches (libs.model.serving_eval).
        heads = run_heads(runner, [r.path for r in val_imgs], progress=progress)
        probs = np.asarray([[np.nan if p.probability is None else p.probability for p in h.output.predictions]
                            for h in heads], dtype=np.float64)
        labels = label_matrix(val_imgs)
        groups = np.asarray([r.group for r in val_imgs])
        det, scores = {}, {}
        state_path = cfg.out / "state.json"
        calib = json.loads(state_path.read_text())["calibration"] if state_path.is_file() else {}
        for label in manifest.assessed_labels:
            j = CHEXPERT_LABELS.index(label)
            known = ~np.isnan(labels[:, j])
            y, p, g = labels[known, j], probs[known, j], groups[known]
            thr = manifest.thresholds[label]
            op = operating_point(y, p, thr)
            entry = {"n": int(len(y)), "positives": int(y.sum()), "auroc": auroc(y, p),
                     "auroc_ci95": bootstrap_ci(lambda idx: auroc(y[idx], p[idx]), len(y), bootstrap, groups=g),
                     "operating_point": op,
                     "sensitivity_ci95": bootstrap_ci(lambda idx: operating_point(y[idx], p[idx], thr)["sensitivity"],
                                                      len(y), bootstrap, groups=g),
                     "specificity_ci95": bootstrap_ci(lambda idx: operating_point(y[idx], p[idx], thr)["specificity"],
                                                      len(y), bootstrap, groups=g),
                     "reliability_calibrated": reliability(y, p)}
            fpr, tpr, _ = roc_curve(y, p)
            entry["roc"] = {"fpr": [round(float(v), 4) for v in fpr], "tpr": [round(float(v), 4) for v in tpr]}
            if label in calib:  # undo Platt to show the uncalibrated head
                a, b = calib[label]
                z = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
                entry["reliability_uncalibrated"] = reliability(y, 1 / (1 + np.exp(-((z - b) / a))))
            det[label] = entry
            scores[label] = {"pos": p[y == 1].tolist(), "neg": p[y == 0].tolist()}
        split_file = cfg.data.images.split_file or "patient-grouped random split"
        split_name = (f"Kermany validation ({split_file})" if cfg.data.images.kind == "kermany"
                      else f"{cfg.data.images.kind} validation split")
        result["detection"] = {"split": split_name,
                               "path": "serving: DX DICOM wrap -> intake validation -> ingestion load_for_model -> "
                                       "bundle runner (INT8 ONNX, batched)",
                               "boxes": box_summary(heads, manifest),
                               "specificity_by_series": _specificity_by_series(val_imgs, probs, manifest),
                               "n_images": len(val_imgs), "labels": det,
                               "critical_findings": {k: ("assessed" if k in manifest.assessed_labels else "not assessed")
                                                     for k in sorted(CRITICAL_LABELS)}}
        head = HeadErrorModel(scores, dict(manifest.thresholds))

    decoder = None
    if manifest.files.decoder:
        gen = manifest.generation
        decoder = ReportDecoder(bundle / manifest.files.decoder, bundle / manifest.files.tokenizer,
                                max_new_tokens=gen.max_new_tokens if gen else 160,
                                no_repeat_ngram_size=gen.no_repeat_ngram_size if gen else 0,
                                num_beams=gen.num_beams if gen else 1, length_penalty=gen.length_penalty if gen else 1.0)
        result["generation"] = gen.model_dump() if gen else None
    fmt = (manifest.generation or Generation()).prompt_format

    # ---- report side
    train_reports = data.reports_in("train")
    test = data.reports_in("test")
    if decoder is not None and test and not (manifest.generation and manifest.generation.image_tokens):
        normal = constant_normal_report(train_reports)
        retrieval = Retrieval(train_reports)
        refs = [r.text for r in test]
        ref_results = _label_all(refs)
        conditions = {}
        # condition -> (findings per report, QA thresholds). A's "head" is the reference labels themselves
        # (an oracle for all 14; its scores 1.0 / 0.6 / 0.0 are decided at 0.5, as its prompts say);
        # B's is the bundle's, with the manifest's thresholds.
        cond_inputs = {
            "A_reference_labels": ([reference_findings(r.statuses) for r in test], {}),
        }
        if head is not None:
            cond_inputs["B_bundle"] = ([head.sample(r.statuses, rng) for r in test], dict(manifest.thresholds))
        for cond, (findings, thresholds) in cond_inputs.items():
            prompts = [build_prompt(context_text(r.context), findings_prompt(f, fmt)) for r, f in zip(test, findings)]
            texts = _generate(decoder, prompts, progress, cond)
            conditions[cond] = _score_condition(test, prompts, [_decisions(f) for f in findings], texts, normal,
                                                retrieval, ref_results, bootstrap, cfg.seed)
            conditions[cond]["qa_flags"] = qa_flag_stats(test, findings, texts, thresholds, manifest.name,
                                                         manifest.version)
        result["reports"] = {"split": "report test split by report id (IU: configs/splits/iu_reports.json)",
                             "conditions": conditions}
    paired_test = data.paired_in("test")
    if decoder is not None and paired_test and manifest.generation and manifest.generation.image_tokens:
        # Image-conditioned generation (paired data): the bundle's own head decisions + image tokens.
        imgs = load_images_cached([p.image.path for p in paired_test], cfg.image_size, cache, progress)
        enc = run_encoder(bundle / manifest.files.encoder, normalized_images(imgs, norm), ["probabilities", "image_tokens"])
        records = [p.report for p in paired_test]
        findings = [[(label, float(enc["probabilities"][i, CHEXPERT_LABELS.index(label)]),
                      float(enc["probabilities"][i, CHEXPERT_LABELS.index(label)]) >= manifest.thresholds[label])
                     for label in manifest.assessed_labels] for i in range(len(records))]
        prompts = [build_prompt(context_text(r.context), findings_prompt(f, fmt)) for r, f in zip(records, findings)]
        texts = [decoder.generate(p, enc["image_tokens"][i:i + 1]).text for i, p in enumerate(prompts)]
        paired_train = [p.report for p in data.paired_in("train")] or records
        conditions = {"P_paired_images": _score_condition(
            records, prompts, [_decisions(f) for f in findings], texts, constant_normal_report(paired_train),
            Retrieval(paired_train), _label_all([r.text for r in records]), bootstrap, cfg.seed)}
        conditions["P_paired_images"]["qa_flags"] = qa_flag_stats(records, findings, texts, dict(manifest.thresholds),
                                                                  manifest.name, manifest.version)
        result["reports"] = {"split": "paired test split (image + report)", "conditions": conditions}

    # ---- end-to-end text on images, and the context-robustness suite (finished reports, as the API returns them)
    if decoder is not None and heads and not (manifest.generation and manifest.generation.image_tokens):
        y = label_matrix(val_imgs)
        j = CHEXPERT_LABELS.index("Pneumonia")
        suites = {}
        served_by_context = {}
        for name, ctx in suite_contexts.items():
            served_by_context[name] = report_heads(runner, heads, ctx, progress=progress)
            suites[name] = robustness.summarize_context(served_by_context[name])
        result["robustness"] = {"kermany_validation": suites}
        if "Pneumonia" in manifest.assessed_labels:
            thr = manifest.thresholds["Pneumonia"]
            served = served_by_context.get("none") or report_heads(runner, heads, None, progress=progress)
            findings = [[(p.label, float(p.probability), bool(p.positive)) for p in h.output.predictions if p.assessed]
                        for h in heads]
            decisions = [_decisions(f) for f in findings]
            normal = constant_normal_report(train_reports) if train_reports else ""
            retrieval = Retrieval(train_reports) if train_reports else None
            texts = {"model": [qa_text(s.report) for s in served],
                     "model_raw_decoder": [s.raw_text or "" for s in served],
                     "constant_normal": [normal] * len(val_imgs),
                     "template": [template_report(d) for d in decisions]}
            if retrieval is not None:
                texts["retrieval"] = [retrieval(d) for d in decisions]
            truth = y[:, j] == 1
            rows = {}
            for name, hyps in texts.items():
                res = _label_all(hyps)
                # a hedged mention ("may represent pneumonia") counts: the draft does raise it
                said = np.asarray([r.observations["Pneumonia"].status.value in ("positive", "uncertain") for r in res])
                rows[name] = {**{k: v for k, v in operating_point(truth, said.astype(float), 0.5).items()
                                 if k != "threshold"},
                              "f1": 2 * (said & truth).sum() / max(2 * (said & truth).sum() + (said & ~truth).sum()
                                                                   + (~said & truth).sum(), 1)}
            result["images_end_to_end"] = {
                "what": "Kermany validation images through the serving path, context none; 'model' is the finished "
                        "report (Findings + Impression), 'model_raw_decoder' the decoder's text before grounding. "
                        "The text is labelled by the project's labeler and its Pneumonia mention compared with the "
                        "image label. Baselines get the same head decisions.",
                "n": len(val_imgs), "head_threshold": thr, "systems": rows,
                "examples": [{"image": served[i].head.name, "label": int(truth[i]),
                              "raw_decoder": served[i].raw_text, "report": texts["model"][i]}
                             for i in (0, len(val_imgs) - 1)]}
    if decoder is not None and head is not None and test and not (manifest.generation and manifest.generation.image_tokens):
        # IU reports have no images here: only a decoder that reads no image tokens can draft from them.
        iu = test[: (200 if limit is None else limit)]
        iu_heads = iu_bundle_heads(iu, head, manifest, rng)
        result.setdefault("robustness", {})["iu_test_prompts"] = robustness.run_suite(
            runner, iu_heads, suite_contexts, progress=progress)
        result["robustness"]["iu_n"] = len(iu)
        comparison = {"this": grounded_text_metrics(runner, iu, progress)}
        if baseline_bundle is not None:
            base = BundleRunner(baseline_bundle, ["CPUExecutionProvider"])
            comparison[f"baseline {base.model_version}"] = grounded_text_metrics(base, iu, progress)
        result["text_vs_baseline"] = {"what": "IU test prompts, condition A (context + the 14 reference labels), the "
                                              "first n test reports; raw decoder text and the finished report",
                                      "n": len(iu), "bundles": comparison}

    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
    (out_dir / "evaluation.md").write_text(render_markdown(result), encoding="utf-8")
    try:
        write_plots(result, out_dir)
    except Exception as exc:  # plots are a convenience; the numbers are in the JSON
        result["plots_error"] = f"{type(exc).__name__}: {exc}"
    summary = summarize(result)
    _write_manifest_summary(bundle, summary)
    return summary


def _clinical_context(ctx):  # noqa: ANN001, ANN202 - libs.data.records.Context -> ClinicalContext
    """A dataset record's context as an API request carries it. IU gives no prior date, only that a prior
    exists: a placeholder date stands for it (the prompt says "prior study" either way)."""
    import datetime as dt

    from libs.domain.context import ClinicalContext
    from libs.bundle.decoder import MAX_INDICATION_CHARS

    return ClinicalContext(age=ctx.age if ctx.age is not None and 0 <= ctx.age <= 130 else None,
                           sex=ctx.sex if ctx.sex in ("M", "F", "O", "U") else None,
                           indication=(ctx.indication or "")[:MAX_INDICATION_CHARS] or None,
                           prior_studies=[dt.date(2000, 1, 1)] if ctx.has_prior else [])


def _output_from_findings(findings, thresholds: dict[str, float], manifest):  # noqa: ANN001, ANN202
    """A ModelOutput whose assessed labels are `findings` [(label, probability, positive)]."""
    from libs.domain.model_output import LabelPrediction, ModelOutput

    scores = {label: p for label, p, _ in findings}
    return ModelOutput(model_name=manifest.name, model_version=manifest.version, predictions=[
        LabelPrediction(label=label, probability=scores.get(label),
                        threshold=thresholds.get(label, 0.5) if label in scores else None)
        for label in CHEXPERT_LABELS])


def iu_bundle_heads(records, head, manifest, rng) -> list:  # noqa: ANN001
    """IU test reports as the bundle would see them (condition B: the assessed labels scored like the
    head scores), with no image: no box, so no side."""
    from libs.model.serving_eval import HeadResult

    return [HeadResult(name=r.report_id, output=_output_from_findings(head.sample(r.statuses, rng),
                                                                      dict(manifest.thresholds), manifest),
                       image=None, rows=0) for r in records]


def grounded_text_metrics(runner, records, progress: bool) -> dict:  # noqa: ANN001
    """BLEU-4, ROUGE-L and CE micro-F1 of one bundle on IU condition A, for the decoder's raw text and for
    the finished report (grounded and completed by the renderer), each against the reference report."""
    from libs.domain.request import ReportRequest
    from libs.model.nlg import score_texts
    from libs.model.prompts import reference_findings
    from libs.model.serving_eval import decode_distinct
    from libs.qa.review import qa_text
    from libs.reporting.render import render_report

    outputs = [_output_from_findings(reference_findings(r.statuses), {}, runner.manifest) for r in records]
    contexts = [_clinical_context(r.context) for r in records]
    raw = decode_distinct(runner, outputs, contexts, progress=progress)
    finished = []
    for k, (out, ctx, text) in enumerate(zip(outputs, contexts, raw, strict=True)):
        report = render_report(f"iu-{k}", f"iu-{k}", out.model_copy(update={"text": text}),
                               ReportRequest(clinical_context=ctx))
        finished.append(qa_text(report))
    refs = [r.text for r in records]
    ref_results = _label_all(refs)
    out = {"bundle": f"{runner.model_name} {runner.model_version}"}
    for name, hyps in (("raw_decoder", raw), ("finished_report", finished)):
        nlg = score_texts(hyps, refs, meteor=False, bootstrap=0)
        ce = clinical_scores(_label_all(hyps), ref_results, bootstrap=0)
        out[name] = {"BLEU-4": nlg["BLEU-4"], "ROUGE-L": nlg["ROUGE-L"], "CE_micro_F1": ce["micro"]["f1"]}
    return out


def summarize(result: dict) -> dict:
    from libs.model.robustness import passes as robustness_passes

    s: dict = {"version": result["bundle"]["version"]}
    for label, d in result.get("detection", {}).get("labels", {}).items():
        s[f"auroc_{label}"] = round(d["auroc"], 4)
        s[f"auroc_{label}_ci95"] = [round(v, 4) for v in d["auroc_ci95"]]
        s[f"sensitivity_{label}"] = round(d["operating_point"]["sensitivity"], 4)
        s[f"specificity_{label}"] = round(d["operating_point"]["specificity"], 4)
        s[f"ece_{label}"] = round(d["reliability_calibrated"]["ece"], 4)
    for cond, c in result.get("reports", {}).get("conditions", {}).items():
        for name, sysm in c["systems"].items():
            s[f"{cond}.{name}"] = {"BLEU-4": round(sysm["nlg"]["BLEU-4"], 4), "ROUGE-L": round(sysm["nlg"]["ROUGE-L"], 4),
                                   "CE_micro_F1": round(sysm["clinical"]["micro"]["f1"], 4)}
        q = c.get("qa_flags", {}).get("stated")
        if q:
            s[f"{cond}.qa_flag"] = {"sensitivity_critical": q["sensitivity"], "flagged_fraction": q["flagged_fraction"]}
    rob = result.get("robustness", {})
    for suite in ("kermany_validation", "iu_test_prompts"):
        if suite in rob:
            s[f"robustness.{suite}"] = {
                "passes": robustness_passes(rob[suite]),
                "min_agreement": min(v["agreement"] for v in rob[suite].values()),
                "contradictions": sum(v["contradictions"] for v in rob[suite].values()),
                "unsupported": sum(v["unsupported"] for v in rob[suite].values()),
                "age_inappropriate": sum(v["age_inappropriate"] for v in rob[suite].values()),
                "interval": sum(v["interval"] for v in rob[suite].values())}
    if "images_end_to_end" in result:
        m = result["images_end_to_end"]["systems"]["model"]
        s["images_end_to_end_pneumonia_text"] = {"sensitivity": round(m["sensitivity"], 4),
                                                 "specificity": round(m["specificity"], 4)}
    return s


def box_summary(heads, manifest) -> dict:  # noqa: ANN001 - serving_eval.HeadResult list, Manifest
    """Per assessed label: how many head-positive images got a (focal) box, and the boxes' share of the
    source image (boxes are emitted only under the manifest's box policy, docs/bundle.md)."""
    from libs.bundle import boxes

    out = {}
    for label in manifest.assessed_labels:
        pos = [h for h in heads if h.output.prediction(label).positive]
        fractions = []
        for h in pos:
            box = h.output.prediction(label).bounding_box
            if box is not None:
                fractions.append((box[2] - box[0]) * (box[3] - box[1]) / float(h.image.width * h.rows))
        stats = boxes.box_statistics(fractions, manifest.boxes.max_area_fraction)
        out[label] = {"positives": len(pos), "with_box": len(fractions),
                      "area_fraction": ({k: stats[k] for k in ("median", "p10", "p90")} | {"max": max(fractions)}
                                        if fractions else None)}
    return out


def _specificity_by_series(records, probs: np.ndarray, manifest) -> dict | None:  # noqa: ANN001
    """Specificity at the shipped threshold on each normal file-name series of the Kermany validation
    split (a head that learnt one series' look as "normal" fails on the other's normal films)."""
    from libs.data.kermany import series_of

    try:
        series = np.asarray(series_of(records))
    except (OSError, KeyError, ValueError):
        return None  # not the Kermany layout
    if "Pneumonia" not in manifest.assessed_labels:
        return None
    j = CHEXPERT_LABELS.index("Pneumonia")
    y = np.asarray([r.labels[j] for r in records])
    thr = manifest.thresholds["Pneumonia"]
    return {s: {"n": int(((series == s) & (y == 0)).sum()),
                "specificity": float((probs[(series == s) & (y == 0), j] < thr).mean())}
            for s in sorted(set(series[y == 0]))}


def _write_manifest_summary(bundle: Path, summary: dict) -> None:
    from libs.bundle.manifest import Manifest

    path = bundle / "manifest.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.setdefault("metrics", {})["evaluation"] = summary
    Manifest.model_validate(doc)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- rendering ----------------------------------------------------------------------------------------

def _f(v, nd=3):
    return "—" if v is None else f"{v:.{nd}f}"


def _ci(ci, nd=3):
    return "" if not ci else f" [{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]"


def render_markdown(result: dict) -> str:
    lines = [f"# Evaluation of {result['bundle']['name']} {result['bundle']['version']}", "",
             "Generated by `cxr-report evaluate`; every number below is in evaluation.json. "
             "95 % bootstrap intervals in brackets.", ""]
    det = result.get("detection")
    if det:
        lines += [f"## Detection ({det['split']}, n = {det['n_images']})", "",
                  "| label | AUROC | threshold | sensitivity | specificity | ECE (Platt) | ECE (raw) |", "|---|---|---|---|---|---|---|"]
        for label, d in det["labels"].items():
            op = d["operating_point"]
            raw = d.get("reliability_uncalibrated", {}).get("ece")
            lines.append(f"| {label} | {_f(d['auroc'])}{_ci(d['auroc_ci95'])} | {op['threshold']:.3f} | "
                         f"{_f(op['sensitivity'])}{_ci(d['sensitivity_ci95'])} | {_f(op['specificity'])}"
                         f"{_ci(d['specificity_ci95'])} | {_f(d['reliability_calibrated']['ece'])} | {_f(raw)} |")
        lines += ["", "Critical findings: " + ", ".join(f"{k}: {v}" for k, v in det["critical_findings"].items()), ""]
    rep = result.get("reports")
    if rep:
        for cond, c in rep["conditions"].items():
            lines += [f"## Reports, condition {cond} ({rep['split']}, n = {c['n']})", "",
                      "| system | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | ROUGE-L | CIDEr | CE micro P / R / F1 | CE macro F1 |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for name, s in c["systems"].items():
                n, cl = s["nlg"], s["clinical"]
                lines.append(f"| {name} | {_f(n['BLEU-1'])} | {_f(n['BLEU-2'])} | {_f(n['BLEU-3'])} | "
                             f"{_f(n['BLEU-4'])}{_ci(n['ci95'].get('BLEU-4'))} | {_f(n.get('METEOR'))} | "
                             f"{_f(n['ROUGE-L'])}{_ci(n['ci95'].get('ROUGE-L'))} | {_f(n['CIDEr'])} | "
                             f"{_f(cl['micro']['precision'])} / {_f(cl['micro']['recall'])} / {_f(cl['micro']['f1'])}"
                             f"{_ci(cl.get('micro_f1_ci95'))} | {_f(cl['macro']['f1'])} |")
            lines += ["", "Error categories (counts over the 13 abnormal observations; per report in brackets):", "",
                      "| system | missed | hallucinated | wrong laterality | wrong severity | critical-finding sensitivity (text) |",
                      "|---|---|---|---|---|---|"]
            for name, s in c["systems"].items():
                e, pr, cs = s["clinical"]["errors"], s["clinical"]["errors_per_report"], s["clinical"]["critical_sensitivity"]
                lines.append(f"| {name} | " + " | ".join(f"{e[k]} ({pr[k]:.2f})" for k in ("missed", "hallucinated",
                             "laterality", "severity")) + f" | {_f(cs['value'])} ({cs['tp']}/{cs['tp'] + cs['fn']}) |")
            bias = c["systems"]["model"].get("bias")
            if bias:
                lines += ["", "Bias table (model): age from the IU DICOM metadata, sex from the indication text "
                          "(the metadata's sex column is empty).", "",
                          "| group | n | BLEU-4 | ROUGE-L | CE micro F1 | abnormal TPR | abnormal FPR | hallucinated / report | missed / report |",
                          "|---|---|---|---|---|---|---|---|---|"]
                for b in bias:
                    lines.append(f"| {b['group']} {b['value']} | {b['n']} | {_f(b['BLEU-4'])} | {_f(b['ROUGE-L'])} | "
                                 f"{_f(b['ce_micro_f1'])} | {_f(b['abnormal_tpr'])} | {_f(b['abnormal_fpr'])} | "
                                 f"{_f(b['hallucinated_per_report'])} | {_f(b['missed_per_report'])} |")
            lines.append("")
    if rep and any("qa_flags" in c for c in rep["conditions"].values()):
        lines += ["## QA review flag", "",
                  "The QA service's `requires_radiologist_review` on the model's drafts (rendered with the standard "
                  "template, reviewed exactly as the pipeline does), against the reference report read by the "
                  "labeler. A: the head is the reference labels for all 14 observations (oracle); B and P: the "
                  "bundle's own head. 95 % Wilson intervals.", "",
                  "| condition | critical studies counted as | studies | flagged for review | critical studies | "
                  "sensitivity | " + " | ".join(sorted(CRITICAL_LABELS)) + " |",
                  "|---|---|---|---|---|---|" + "---|" * len(CRITICAL_LABELS)]
        for cond, c in rep["conditions"].items():
            for key, q in c.get("qa_flags", {}).items():
                per = " | ".join(f"{s['flagged']}/{s['studies']}" for _, s in sorted(q["per_label"].items()))
                lines.append(f"| {cond} | {key.replace('_', ' ')} | {q['studies']} | {q['flagged']} "
                             f"({_f(q['flagged_fraction'])}{_ci(q['flagged_fraction_ci95'])}) | {q['critical_studies']} | "
                             f"{_f(q['sensitivity'])}{_ci(q['sensitivity_ci95'])} | {per} |")
        lines.append("")
    det = result.get("detection")
    if det and det.get("boxes"):
        lines += ["## Boxes (head-positive images, serving path)", "",
                  "| label | positives | with a focal box | area / image: median | p10 | p90 | max |", "|---|---|---|---|---|---|---|"]
        for label, b in det["boxes"].items():
            a = b["area_fraction"] or {}
            lines.append(f"| {label} | {b['positives']} | {b['with_box']} | {_f(a.get('median'))} | {_f(a.get('p10'))} | "
                         f"{_f(a.get('p90'))} | {_f(a.get('max'))} |")
        lines.append("")
    if det and det.get("specificity_by_series"):
        lines += ["Specificity at the shipped threshold by normal file-name series: " + ", ".join(
            f"{k} {v['specificity']:.3f} (n {v['n']})" for k, v in det["specificity_by_series"].items()), ""]
    rob = result.get("robustness")
    if rob:
        from libs.model.robustness import markdown as robustness_markdown

        lines += ["## Context robustness", "",
                  "The same studies under each fixed context (libs.model.robustness.CONTEXTS). Agreement: text states "
                  "present exactly the head's positives and the Impression names each. Counts are sentences, except "
                  "contradictions (studies). 'raw' columns: the decoder's text before grounding.", ""]
        suites = {"Kermany validation (serving path)": rob["kermany_validation"]} if "kermany_validation" in rob else {}
        if "iu_test_prompts" in rob:
            suites[f"IU test prompts, condition B (first {rob['iu_n']} reports)"] = rob["iu_test_prompts"]
        lines += robustness_markdown(suites)
    tvb = result.get("text_vs_baseline")
    if tvb:
        lines += [f"## Text metrics beside the baseline ({tvb['what']}, n = {tvb['n']})", "",
                  "| bundle | text | BLEU-4 | ROUGE-L | CE micro F1 |", "|---|---|---|---|---|"]
        for key, b in tvb["bundles"].items():
            for part in ("raw_decoder", "finished_report"):
                m = b[part]
                lines.append(f"| {b['bundle']} | {part.replace('_', ' ')} | {_f(m['BLEU-4'])} | {_f(m['ROUGE-L'])} | "
                             f"{_f(m['CE_micro_F1'])} |")
        lines.append("")
    e2e = result.get("images_end_to_end")
    if e2e:
        lines += [f"## End to end on images (n = {e2e['n']})", "", e2e["what"], "",
                  "| system | text says pneumonia: sensitivity | specificity | PPV | F1 |", "|---|---|---|---|---|"]
        for name, r in e2e["systems"].items():
            lines.append(f"| {name} | {_f(r['sensitivity'])} | {_f(r['specificity'])} | {_f(r['ppv'])} | {_f(r['f1'])} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_plots(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = result.get("reports", {}).get("conditions", {}).get("A_reference_labels")
    if rep:
        fig, ax = plt.subplots(figsize=(11, 4.5))
        labels = list(CHEXPERT_LABELS)
        width = 0.8 / len(rep["systems"])
        for k, (name, s) in enumerate(rep["systems"].items()):
            vals = [s["clinical"]["per_observation"][label]["f1"] for label in labels]
            ax.bar(np.arange(len(labels)) + k * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("F1 (labeler on generated vs reference)")
        ax.set_title("Per-finding F1, IU test, condition A (reference labels)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "per_finding_f1.png", dpi=110)
        plt.close(fig)
    det = result.get("detection", {}).get("labels", {})
    if det:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for label, d in det.items():
            ax.plot(d["roc"]["fpr"], d["roc"]["tpr"], label=f"{label} (AUROC {d['auroc']:.3f})")
            op = d["operating_point"]
            ax.plot([1 - op["specificity"]], [op["sensitivity"]], "o", ms=4, label=f"threshold {op['threshold']:.2f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title("ROC, Kermany validation")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(out_dir / "roc.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for label, d in det.items():
            for key, style in (("reliability_uncalibrated", "--o"), ("reliability_calibrated", "-o")):
                if key in d:
                    b = [r for r in d[key]["bins"] if r["count"]]
                    ax.plot([r["confidence"] for r in b], [r["observed"] for r in b], style,
                            label=f"{label} {key.split('_')[1]} (ECE {d[key]['ece']:.3f})", ms=3)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title("Reliability, Kermany validation")
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(out_dir / "reliability.png", dpi=110)
        plt.close(fig)
