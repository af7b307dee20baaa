"""Training-time prompts: clinical context + injected findings, in the serving format (libs.bundle.decoder).

Three forms of the findings part (FindingsNoise sets the mix):
- reference: all 14 labels from the reference report's labeler statuses: positive -> "yes 1.0",
  uncertain -> "yes 0.6", negative / not mentioned -> "no 0.0" (what "conditioned on the reference
  labels" means in the evaluation);
- bundle: only the labels the bundle's detection head assesses, each score drawn from the head's own
  calibrated validation scores for images of the same class (positive or negative), decision by the
  head's threshold: the decoder sees the head's real error rates and score spread;
- noisy: every label kept with probability keep_label (omitted = not assessed); a reference positive
  is missed with probability `miss`, a reference negative called positive with probability
  `false_alarm` (findings are rare, so a symmetric flip would drown the true positives); score uniform
  on the decided side of 0.5.
"""

from __future__ import annotations

import random

from libs.bundle.decoder import build_prompt, context_prompt, findings_prompt
from libs.data.records import Context, ReportRecord
from libs.domain.labels import CHEXPERT_LABELS

POSITIVE_STATUSES = ("positive", "uncertain")


def reference_findings(statuses: dict[str, str]) -> list[tuple[str, float, bool]]:
    out = []
    for label in CHEXPERT_LABELS:
        status = statuses.get(label, "not_mentioned")
        if status == "positive":
            out.append((label, 1.0, True))
        elif status == "uncertain":
            out.append((label, 0.6, True))
        else:
            out.append((label, 0.0, False))
    return out


class HeadErrorModel:
    """Per assessed label: calibrated validation scores of positive and negative images, and the threshold."""

    def __init__(self, scores: dict[str, dict[str, list[float]]], thresholds: dict[str, float]):
        self.scores, self.thresholds = scores, thresholds

    def sample(self, statuses: dict[str, str], rng: random.Random) -> list[tuple[str, float, bool]]:
        out = []
        for label, thr in self.thresholds.items():
            positive = statuses.get(label, "not_mentioned") in POSITIVE_STATUSES
            pool = self.scores.get(label, {}).get("pos" if positive else "neg") or [1.0 if positive else 0.0]
            p = float(rng.choice(pool))
            out.append((label, p, p >= thr))
        return out


def noisy_findings(statuses: dict[str, str], rng: random.Random, keep: float, miss: float,
                   false_alarm: float) -> list[tuple[str, float, bool]]:
    out = []
    for label in CHEXPERT_LABELS:
        if rng.random() >= keep:
            continue
        decision = statuses.get(label, "not_mentioned") in POSITIVE_STATUSES
        if rng.random() < (miss if decision else false_alarm):
            decision = not decision
        p = rng.uniform(0.5, 1.0) if decision else rng.uniform(0.0, 0.5)
        out.append((label, p, decision))
    return out


def context_text(ctx: Context, rng: random.Random | None = None, drop: float = 0.0) -> str:
    def keep() -> bool:
        return rng is None or rng.random() >= drop

    return context_prompt(age=ctx.age if keep() else None, sex=ctx.sex if keep() else None,
                          indication=ctx.indication if keep() else None, has_prior=ctx.has_prior and keep())


def training_prompt(record: ReportRecord, rng: random.Random, noise, head: HeadErrorModel | None) -> str:
    u = rng.random()
    if u < noise.p_reference:
        findings = reference_findings(record.statuses)
    elif u < noise.p_reference + noise.p_bundle and head is not None:
        findings = head.sample(record.statuses, rng)
    else:
        findings = noisy_findings(record.statuses, rng, noise.keep_label, noise.miss, noise.false_alarm)
    return build_prompt(context_text(record.context, rng, noise.drop_context_field), findings_prompt(findings))


def reference_prompt(record: ReportRecord) -> str:
    """Evaluation condition A: full context, reference labels."""
    return build_prompt(context_text(record.context), findings_prompt(reference_findings(record.statuses)))


def bundle_prompt(record: ReportRecord, head: HeadErrorModel, rng: random.Random) -> str:
    """Evaluation condition B: full context, only the assessed labels, scores drawn like the head's."""
    return build_prompt(context_text(record.context), findings_prompt(head.sample(record.statuses, rng)))
