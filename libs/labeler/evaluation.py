"""Agreement of the labeler with the IU/Open-i manual MeSH indexing (the `label-eval` table).

Evaluation set: every IU report with findings or impression text and at least one MeSH major term
other than "No Indexing". The labeler reads findings + impression; the reference is
`mesh.mesh_observations(report.mesh_major)`.

Uncertain counts as positive here (`uncertain_positive=True`) because the MeSH indexers tagged hedged
findings: "possible left basilar infiltrate versus atelectasis" is indexed Infiltrate and Atelectasis.
The strict policy (uncertain = not positive) is reported next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libs.domain.labels import CHEXPERT_LABELS
from libs.labeler.iu_reports import IUReport, load_iu_reports
from libs.labeler.labeler import label_reports
from libs.labeler.mesh import mesh_observations
from libs.labeler.metrics import positive_set, score_label_sets
from libs.labeler.types import LabelerResult


@dataclass(slots=True)
class MeshEvaluation:
    reports: list[IUReport]
    results: list[LabelerResult]
    reference: list[set[str]]
    predicted: list[set[str]]  # positive or uncertain
    scores: dict[str, Any]  # uncertain counted as positive
    strict_scores: dict[str, Any]  # uncertain counted as negative

    def disagreements(self, observation: str) -> list[tuple[str, IUReport, LabelerResult]]:
        """("fp" | "fn", report, labeler result) for every report where the two disagree on `observation`."""
        out = []
        for report, result, pred, ref in zip(self.reports, self.results, self.predicted, self.reference, strict=True):
            if (observation in pred) != (observation in ref):
                out.append(("fp" if observation in pred else "fn", report, result))
        return out


def evaluation_set(reports: list[IUReport]) -> list[IUReport]:
    return [r for r in reports if r.text.strip() and r.is_indexed]


def evaluate_against_mesh(reports: list[IUReport] | None = None, source: Path | str | None = None) -> MeshEvaluation:
    chosen = evaluation_set(reports if reports is not None else load_iu_reports(source))
    results = label_reports(r.text for r in chosen)
    reference = [mesh_observations(r.mesh_major) for r in chosen]
    loose = [positive_set(res, uncertain_positive=True) for res in results]
    strict = [positive_set(res, uncertain_positive=False) for res in results]
    return MeshEvaluation(
        reports=chosen, results=results, reference=reference, predicted=loose,
        scores=score_label_sets(loose, reference), strict_scores=score_label_sets(strict, reference),
    )


def format_table(evaluation: MeshEvaluation) -> str:
    """Markdown table: per observation P/R/F1 and counts, then micro/macro rows, for both policies."""
    loose, strict = evaluation.scores, evaluation.strict_scores
    lines = [
        f"IU/Open-i reports evaluated: {loose['n']} (reference: MeSH major terms mapped to CheXpert observations)",
        "",
        "| observation | support | predicted | precision | recall | F1 | F1 (uncertain=negative) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in CHEXPERT_LABELS:
        row, srow = loose["per_observation"][name], strict["per_observation"][name]
        lines.append(
            f"| {name} | {row['support']} | {row['predicted']} | {row['precision']:.3f} | {row['recall']:.3f} "
            f"| {row['f1']:.3f} | {srow['f1']:.3f} |"
        )
    lm, sm = loose["micro"], strict["micro"]
    lines.append(f"| **micro** | {lm['support']} | {lm['predicted']} | {lm['precision']:.3f} | {lm['recall']:.3f} "
                 f"| **{lm['f1']:.3f}** | {sm['f1']:.3f} |")
    lines.append(f"| **macro** | | | {loose['macro']['precision']:.3f} | {loose['macro']['recall']:.3f} "
                 f"| **{loose['macro']['f1']:.3f}** | {strict['macro']['f1']:.3f} |")
    findings = [n for n in CHEXPERT_LABELS if n != "No Finding"]
    f13 = score_label_sets(evaluation.predicted, evaluation.reference, findings)
    lines.append(f"| micro, 13 findings (without No Finding) | {f13['micro']['support']} | "
                 f"{f13['micro']['predicted']} | {f13['micro']['precision']:.3f} | {f13['micro']['recall']:.3f} "
                 f"| {f13['micro']['f1']:.3f} | |")
    return "\n".join(lines)
