"""Clinical-efficacy metrics: label generated and reference reports, compare the observation sets.

Positive means status POSITIVE. Uncertain is NOT positive by default (`uncertain_positive=False`): a
generated "possible effusion" earns no credit for a reference effusion and is no false positive
against a reference without one. This is the usual CE convention (CheXpert labeler, "U-zeros").
Pass `uncertain_positive=True` to count uncertain as positive on both sides ("U-ones").

Per observation: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean; a
ratio with a zero denominator is 0.0. Micro: the same over the pooled TP/FP/FN of all observations.
Macro: the mean over observations with at least one reference positive (the others have no recall
to speak of; `macro_over` lists which were averaged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libs.domain.labels import CHEXPERT_LABELS
from libs.labeler.labeler import label_reports
from libs.labeler.types import LabelerResult, Status


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "support": tp + fn, "predicted": tp + fp}


def score_label_sets(
    predicted: Sequence[set[str]], reference: Sequence[set[str]], labels: Sequence[str] = CHEXPERT_LABELS
) -> dict[str, Any]:
    """Precision/recall/F1 per label, micro and macro, for two aligned lists of positive-label sets."""
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predictions for {len(reference)} references")
    counts = {label: [0, 0, 0] for label in labels}  # tp, fp, fn
    for pred, ref in zip(predicted, reference, strict=True):
        for label in labels:
            p, r = label in pred, label in ref
            if p and r:
                counts[label][0] += 1
            elif p:
                counts[label][1] += 1
            elif r:
                counts[label][2] += 1
    per = {label: _prf(*counts[label]) for label in labels}
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    averaged = [label for label in labels if per[label]["support"] > 0]
    macro = {
        key: (sum(per[label][key] for label in averaged) / len(averaged) if averaged else 0.0)
        for key in ("precision", "recall", "f1")
    }
    return {"n": len(reference), "per_observation": per, "micro": _prf(tp, fp, fn), "macro": macro,
            "macro_over": averaged}


def positive_set(result: LabelerResult, uncertain_positive: bool = False) -> set[str]:
    statuses = (Status.POSITIVE, Status.UNCERTAIN) if uncertain_positive else (Status.POSITIVE,)
    return result.labels_with(*statuses)


def clinical_efficacy(
    generated: list[str], reference: list[str], uncertain_positive: bool = False
) -> dict[str, Any]:
    """Label both report lists and score the generated observations against the reference ones."""
    if len(generated) != len(reference):
        raise ValueError(f"{len(generated)} generated reports for {len(reference)} references")
    predicted = [positive_set(r, uncertain_positive) for r in label_reports(generated)]
    truth = [positive_set(r, uncertain_positive) for r in label_reports(reference)]
    scores = score_label_sets(predicted, truth)
    scores["uncertain_policy"] = "positive" if uncertain_positive else "negative"
    return scores
