"""Measurement tool (not used at run time): the same mention vocabulary with medspaCy's ConText instead
of our cue/scope rules, scored against the IU MeSH labels, for the comparison in docs/labeler.md.

It needs medspaCy, which the project does not ship. Run it from a throwaway environment:

    python -m venv /tmp/msvenv && /tmp/msvenv/bin/pip install medspacy pydantic-settings
    PYTHONPATH=. /tmp/msvenv/bin/python -m libs.labeler.medspacy_baseline

medspaCy's `load()` builds a blank English pipeline (PyRuSH sentence splitter, target matcher, ConText
with its default rules): nothing is downloaded from a model hub.

Mapping of ConText's attributes to statuses: negated -> negative; uncertain or hypothetical ->
uncertain ("evaluate for pneumonia" is hypothetical in ConText, uncertain in CheXpert); otherwise
positive. Historical is positive (an old fracture is still a fracture). The normality statements and
subject + predicate rules of our vocabulary come along (the entities are exactly our mentions, so only
the negation / uncertainty engine differs) and normality statements keep their fixed status.
Aggregation per observation and No Finding are the same as label_report's.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from libs.domain.labels import CHEXPERT_LABELS
from libs.labeler.evaluation import evaluation_set
from libs.labeler.iu_reports import load_iu_reports
from libs.labeler.labeler import _lower, find_mentions, label_report
from libs.labeler.mesh import mesh_observations
from libs.labeler.metrics import score_label_sets
from libs.labeler.types import Status
from libs.labeler.vocabulary import Polarity

_RANK = {Status.POSITIVE: 3, Status.UNCERTAIN: 2, Status.NEGATIVE: 1, Status.NOT_MENTIONED: 0}


def build_pipeline() -> Any:
    import medspacy  # noqa: PLC0415 - optional, measurement only
    from loguru import logger  # noqa: PLC0415 - PyRuSH logs every token at DEBUG level, which would swamp timings

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    return medspacy.load()


def annotate(nlp: Any, texts: list[str]) -> list[Any]:
    """PyRuSH sentences, our mentions as the entities, then ConText (the target matcher is not used)."""
    from spacy.tokens import Span  # noqa: PLC0415

    context = nlp.get_pipe("medspacy_context")
    docs = []
    for doc in nlp.pipe(texts, disable=["medspacy_target_matcher", "medspacy_context"]):
        labels: dict[tuple[int, int], list[str]] = {}
        for m in find_mentions(_lower(doc.text)):
            labels.setdefault((m.start, m.end), []).append(f"{m.observation}={m.polarity.value}")
        ents = []
        last_end = -1
        for (start, end), parts in sorted(labels.items()):
            span = doc.char_span(start, end, label="|".join(parts), alignment_mode="expand")
            if span is None or span.start < last_end:
                continue
            ents.append(Span(doc, span.start, span.end, label="|".join(parts)))
            last_end = span.end
        doc.ents = ents
        docs.append(context(doc))
    return docs


def doc_statuses(doc: Any) -> dict[str, Status]:
    found: dict[str, Status] = {}
    for ent in doc.ents:
        for part in ent.label_.split("|"):
            obs, pol = part.split("=")
            if pol == Polarity.NEGATIVE.value:
                status = Status.NEGATIVE
            elif ent._.is_negated:
                status = Status.NEGATIVE
            elif ent._.is_uncertain or ent._.is_hypothetical or pol == Polarity.UNCERTAIN.value:
                status = Status.UNCERTAIN
            else:
                status = Status.POSITIVE
            if _RANK[status] > _RANK[found.get(obs, Status.NOT_MENTIONED)]:
                found[obs] = status
    if doc.text.strip():
        abnormal = any(s in (Status.POSITIVE, Status.UNCERTAIN) for o, s in found.items() if o != "Support Devices")
        found["No Finding"] = Status.NEGATIVE if abnormal else Status.POSITIVE
    return found


def main() -> int:
    nlp = build_pipeline()
    reports = evaluation_set(load_iu_reports())
    texts = [r.text for r in reports]
    reference = [mesh_observations(r.mesh_major) for r in reports]

    start = time.perf_counter()
    docs = annotate(nlp, texts)
    medspacy_seconds = time.perf_counter() - start
    medspacy_status = [doc_statuses(doc) for doc in docs]

    start = time.perf_counter()
    ours = [label_report(t) for t in texts]
    ours_seconds = time.perf_counter() - start

    def loose(statuses: dict[str, Status]) -> set[str]:
        return {o for o, s in statuses.items() if s in (Status.POSITIVE, Status.UNCERTAIN)}

    def strict(statuses: dict[str, Status]) -> set[str]:
        return {o for o, s in statuses.items() if s is Status.POSITIVE}

    ours_status = [{o: lab.status for o, lab in r.observations.items()} for r in ours]
    # Status-level agreement between the two engines on observations either of them mentions.
    agree = total = 0
    for a, b in zip(ours_status, medspacy_status, strict=True):
        for obs in CHEXPERT_LABELS:
            sa, sb = a.get(obs, Status.NOT_MENTIONED), b.get(obs, Status.NOT_MENTIONED)
            if sa is Status.NOT_MENTIONED and sb is Status.NOT_MENTIONED:
                continue
            total += 1
            agree += sa is sb
    out = {
        "reports": len(texts),
        "medspacy": {
            "reports_per_s": len(texts) / medspacy_seconds,
            "micro_f1": score_label_sets([loose(s) for s in medspacy_status], reference)["micro"]["f1"],
            "macro_f1": score_label_sets([loose(s) for s in medspacy_status], reference)["macro"]["f1"],
            "micro_f1_strict": score_label_sets([strict(s) for s in medspacy_status], reference)["micro"]["f1"],
            "per_observation_f1": {
                k: round(v["f1"], 3)
                for k, v in score_label_sets([loose(s) for s in medspacy_status], reference)["per_observation"].items()
            },
        },
        "rules": {
            "reports_per_s": len(texts) / ours_seconds,
            "micro_f1": score_label_sets([loose(s) for s in ours_status], reference)["micro"]["f1"],
            "macro_f1": score_label_sets([loose(s) for s in ours_status], reference)["macro"]["f1"],
            "micro_f1_strict": score_label_sets([strict(s) for s in ours_status], reference)["micro"]["f1"],
            "per_observation_f1": {
                k: round(v["f1"], 3)
                for k, v in score_label_sets([loose(s) for s in ours_status], reference)["per_observation"].items()
            },
        },
        "status_agreement_on_mentioned": agree / total if total else None,
        "mentioned_pairs": total,
    }
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
