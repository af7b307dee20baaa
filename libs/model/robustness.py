"""Context-robustness suite: do drafts follow the head whatever the clinical context says?

The same studies are reported under a fixed set of contexts (CONTEXTS). For each context the finished
reports (grounded, rendered, reviewed: what the API returns) and the decoder's raw text are scored:

- agreement: the share of studies whose text states present exactly the assessed observations the head
  calls positive (QA's labeler reading of Findings + Impression), and whose Impression names every one;
- contradictions: studies where QA found a disagreement or a laterality conflict, or a sentence states an
  assessed observation against the head or claims global normality (libs.reporting.statements);
- unsupported: sentences about observations the bundle does not assess, or with no observation and no
  image behind them ("degenerative changes of the spine" from a text-only decoder), or with a location the
  model has no focal box for;
- age / interval: age-inappropriate wording, comparison language.
The goal for finished reports is 100 % agreement and zero of every count; the raw text's counts show what
grounding removed. Used by `cxr-report evaluate` (libs.model.evaluate) and tests/model/test_robustness.py.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from libs.domain.context import ClinicalContext

# Fixed contexts: none, age alone, the pediatric and adult presentations the issue measured, a request
# that names the finding, and prior dates (which must not produce comparison language).
CONTEXTS: dict[str, ClinicalContext | None] = {
    "none": None,
    "age_only": ClinicalContext(age=45),
    "pediatric_fever_cough": ClinicalContext(age=3, sex="M", indication="Fever and cough"),
    "adult_sob": ClinicalContext(age=67, sex="F", indication="Shortness of breath"),
    "rule_out_pneumonia": ClinicalContext(age=30, indication="Rule out pneumonia"),
    "with_priors": ClinicalContext(age=58, sex="M", indication="Follow-up",
                                   prior_studies=[dt.date(2024, 1, 15), dt.date(2025, 6, 2)]),
}

_UNSUPPORTED = ("unassessed", "outside", "location")
_CONTRADICTION = ("contradicts_head", "global_normal")


def _checks(text: str, evidence):  # noqa: ANN001, ANN202
    from libs.reporting.statements import check_sentences

    return [c for c in check_sentences(text, evidence) if any(ch.isalpha() for ch in c.text)]


def score_study(served) -> dict:  # noqa: ANN001 - libs.model.serving_eval.ServedReport
    """Per-study counts for one ServedReport."""
    from libs.domain.labels import ABNORMAL_LABELS
    from libs.qa.review import qa_text, read_text
    from libs.reporting.render import split_model_text
    from libs.reporting.statements import evidence_for

    output, report = served.head.output, served.report
    age = served.context.age if served.context else None
    evidence = evidence_for(output, served.head.image, age=age, text_sees_image=output.text_sees_image)
    assessed = set(evidence.assessed)
    head = set(evidence.positive)
    reading = read_text(qa_text(report))
    in_text = {k for k, o in reading.observations.items() if k in assessed and o.status.value in ("positive", "uncertain")}
    impression = read_text(report.impression)
    named = all(impression.observations[k].status.value in ("positive", "uncertain") for k in head)
    final = Counter(p for c in _checks(qa_text(report), evidence) for p in c.problems)
    qa = report.qa
    qa_conflicts = len(qa.hallucinations) + len(qa.omissions) + len(qa.laterality_conflicts) if qa else 0
    raw = Counter()
    raw_mentions = set()
    if served.raw_text:
        findings, imp = split_model_text(served.raw_text)
        text = f"{findings}\n{imp or ''}"
        raw = Counter(p for c in _checks(text, evidence) for p in c.problems)
        r = read_text(text)
        raw_mentions = {k for k, o in r.observations.items() if k in ABNORMAL_LABELS and o.status.value in ("positive", "uncertain")}
    return {
        "head_positive": bool(head),
        "agrees": in_text == head and named,
        "contradiction": bool(qa_conflicts or any(final[p] for p in _CONTRADICTION)),
        "final": final,
        "raw": raw,
        "raw_agrees": (raw_mentions & assessed) == head if served.raw_text else None,
        "raw_states_positives": head <= raw_mentions if served.raw_text else None,
        "review": report.requires_radiologist_review,
        "text": f"{report.findings_text}\n{report.impression}",
        "raw_text": served.raw_text,
    }


def summarize_context(served: list) -> dict:
    """Aggregate of score_study over one context's reports."""
    rows = [score_study(s) for s in served]
    n = len(rows)
    pos = [r for r in rows if r["head_positive"]]
    final, raw = Counter(), Counter()
    for r in rows:
        final.update(r["final"])
        raw.update(r["raw"])
    with_raw = [r for r in rows if r["raw_text"] is not None]
    out = {
        "n": n,
        "head_positive": len(pos),
        "agreement": sum(r["agrees"] for r in rows) / n if n else None,
        "contradictions": sum(r["contradiction"] for r in rows),
        "unsupported": sum(final[p] for p in _UNSUPPORTED),
        "age_inappropriate": final["age"],
        "interval": final["interval"],
        "problems": dict(final),
        "review_rate": sum(r["review"] for r in rows) / n if n else None,
        "distinct_texts": len({r["text"] for r in rows}),
    }
    if with_raw:
        out["raw"] = {
            "agreement": sum(bool(r["raw_agrees"]) for r in with_raw) / len(with_raw),
            "positives_stated": (sum(bool(r["raw_states_positives"]) for r in with_raw if r["head_positive"])
                                 / max(sum(r["head_positive"] for r in with_raw), 1)),
            "unsupported": sum(raw[p] for p in _UNSUPPORTED),
            "contradicting_sentences": sum(raw[p] for p in _CONTRADICTION),
            "age_inappropriate": raw["age"],
            "interval": raw["interval"],
            "problems": dict(raw),
            "distinct_texts": len({r["raw_text"] for r in with_raw}),
        }
    return out


def run_suite(runner, heads: list, contexts: dict[str, ClinicalContext | None] | None = None, *,
              progress: bool = False) -> dict:
    """summarize_context for each context over the same head outputs (libs.model.serving_eval)."""
    from libs.model.serving_eval import report_heads

    contexts = CONTEXTS if contexts is None else contexts
    return {name: summarize_context(report_heads(runner, heads, ctx, progress=progress))
            for name, ctx in contexts.items()}


def passes(summary: dict) -> bool:
    """The suite's goal for finished reports, on every context."""
    return all(s["agreement"] == 1.0 and s["contradictions"] == 0 and s["unsupported"] == 0
               and s["age_inappropriate"] == 0 and s["interval"] == 0 for s in summary.values())


def markdown(suites: dict[str, dict]) -> list[str]:
    """Tables for evaluation.md: one per suite (e.g. Kermany validation, IU test prompts)."""
    lines: list[str] = []
    for title, summary in suites.items():
        lines += [f"### {title}", "",
                  "| context | n | head positive | agreement | contradictions | unsupported | age | interval | "
                  "review rate | distinct texts | raw: agreement | raw: positives stated | raw: unsupported | "
                  "raw: contradicting | raw: age | raw: interval | raw: distinct |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in summary.items():
            r = s.get("raw", {})
            raw = (f"{r['agreement']:.3f} | {r['positives_stated']:.3f} | {r['unsupported']} | "
                   f"{r['contradicting_sentences']} | {r['age_inappropriate']} | {r['interval']} | {r['distinct_texts']}"
                   if r else "— | — | — | — | — | — | —")
            lines.append(f"| {name} | {s['n']} | {s['head_positive']} | {s['agreement']:.3f} | {s['contradictions']} | "
                         f"{s['unsupported']} | {s['age_inappropriate']} | {s['interval']} | {s['review_rate']:.3f} | "
                         f"{s['distinct_texts']} | {raw} |")
        lines.append("")
    return lines
