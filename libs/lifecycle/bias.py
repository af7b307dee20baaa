"""The bias audit: the model's quality per subgroup (age band, sex, view, manufacturer where known), with
95 % intervals, equalised-odds gaps, and the subgroups where sensitivity drops below the validation gate.

Ground truth, either
- radiologist feedback (default): every reviewed job with feedback in the window; the truth of each assessed
  observation is the radiologist's call (explicit, or the call of a draft they signed), the prediction the
  head's call in the draft; subgroups from the request's clinical context (age, sex) and the image
  (view, manufacturer); or
- a labelled held-out set (`--data`, libs/lifecycle/heldout.py) run through a registered model.

Per subgroup: sensitivity and specificity pooled over the assessed observations, sensitivity on the gated
observations (the critical findings unless `gate_labels` says otherwise), the hallucination rate (share of
drafts QA found stating an observation the head did not see). Equalised odds (Hardt et al.): per attribute,
the largest difference in true-positive rate and in false-positive rate between its subgroups, with a
bootstrap interval over studies. A subgroup is flagged when its gated sensitivity is below
`gate_sensitivity_min` with at least MIN_POSITIVES positives (fewer: reported as too few to tell).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select

from libs.core.config import Settings
from libs.lifecycle.drift import age_band
from libs.lifecycle.stats import proportion

ATTRIBUTES = ("age", "sex", "view", "manufacturer")
MIN_POSITIVES = 5
BOOTSTRAP = 500


@dataclass
class Study:
    """One study's calls: observation -> (truth, predicted), and its subgroup attributes."""

    calls: dict[str, tuple[bool, bool]]
    attributes: dict[str, str | None]
    hallucinated: bool = False


@dataclass
class Counts:
    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0
    gated_tp: int = 0
    gated_fn: int = 0
    studies: int = 0
    hallucinated: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, study: Study, gated: set[str]) -> None:
        self.studies += 1
        self.hallucinated += study.hallucinated
        for label, (truth, predicted) in study.calls.items():
            if truth:
                self.tp += predicted
                self.fn += not predicted
                if label in gated:
                    self.gated_tp += predicted
                    self.gated_fn += not predicted
            else:
                self.fp += predicted
                self.tn += not predicted


def _band_name(age: float | None) -> str | None:
    band = age_band(age)
    return None if band is None else f"{int(band) - 5}-{int(band) + 4}"


def from_feedback(engine: Engine, window_days: float) -> list[Study]:
    from libs.domain.report import Report
    from libs.feedback.quality import latest_feedback, radiologist_calls
    from libs.storage.db import session_scope
    from libs.storage.models import DriftSampleRow, InstanceRow, JobRow, ReportFeedbackRow

    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=window_days)
    studies = []
    with session_scope(engine) as session:
        latest = latest_feedback(since)
        rows = session.execute(
            select(JobRow.request, JobRow.report, InstanceRow.view, DriftSampleRow.meta,
                   ReportFeedbackRow.decision, ReportFeedbackRow.corrections)
            .join(latest, latest.c.job_id == JobRow.id)
            .join(ReportFeedbackRow, (ReportFeedbackRow.job_id == JobRow.id) & (ReportFeedbackRow.version == latest.c.version))
            .outerjoin(InstanceRow, InstanceRow.sop_instance_uid == JobRow.instance_uid)
            .outerjoin(DriftSampleRow, DriftSampleRow.job_id == JobRow.id)).all()
    for request, report_json, view, meta, decision, corrections in rows:
        report = Report.model_validate(report_json)
        head = {o.label: o.present for o in report.observations}
        truth = radiologist_calls(decision, corrections, head)
        context = (request or {}).get("clinical_context") or {}
        studies.append(Study(
            calls={k: (v, head[k]) for k, v in truth.items() if k in head},
            attributes={"age": _band_name(context.get("age")), "sex": context.get("sex"),
                        "view": (view or (meta or {}).get("view")), "manufacturer": (meta or {}).get("manufacturer")},
            hallucinated=bool(report.qa and report.qa.hallucination_count)))
    return studies


def from_heldout(items, outputs, reports) -> list[Study]:  # noqa: ANN001 - HeldOutItem, ModelOutput, Report lists
    studies = []
    for item, out, report in zip(items, outputs, reports, strict=True):
        calls = {label: (bool(v), out.prediction(label).positive) for label, v in item.labels.items()
                 if out.prediction(label).assessed}
        studies.append(Study(calls=calls, hallucinated=bool(report.qa and report.qa.hallucination_count), attributes={
            "age": _band_name(item.age), "sex": item.meta.get("sex"), "view": item.meta.get("view"),
            "manufacturer": item.meta.get("manufacturer")}))
    return studies


def _rates(studies: list[Study], gated: set[str]) -> Counts:
    c = Counts()
    for s in studies:
        c.add(s, gated)
    return c


def _gap(groups: dict[str, list[Study]], gated: set[str]) -> tuple[float | None, float | None]:
    tprs, fprs = [], []
    for members in groups.values():
        c = _rates(members, gated)
        if c.tp + c.fn:
            tprs.append(c.tp / (c.tp + c.fn))
        if c.fp + c.tn:
            fprs.append(c.fp / (c.fp + c.tn))
    return (max(tprs) - min(tprs) if len(tprs) > 1 else None, max(fprs) - min(fprs) if len(fprs) > 1 else None)


def audit(studies: list[Study], settings: Settings, source: str, seed: int = 0) -> dict:
    from libs.lifecycle.gate import gated_labels

    gated = set(gated_labels(settings))
    overall = _rates(studies, gated)
    rows, gaps, flagged = [], {}, []
    rng = np.random.default_rng(seed)
    for attribute in ATTRIBUTES:
        groups: dict[str, list[Study]] = defaultdict(list)
        for s in studies:
            if s.attributes.get(attribute):
                groups[str(s.attributes[attribute])].append(s)
        if not groups:
            continue
        for name, members in sorted(groups.items()):
            c = _rates(members, gated)
            row = {"attribute": attribute, "group": name, "studies": c.studies,
                   "sensitivity": proportion(c.tp, c.tp + c.fn).as_dict(),
                   "specificity": proportion(c.tn, c.tn + c.fp).as_dict(),
                   "gated_sensitivity": proportion(c.gated_tp, c.gated_tp + c.gated_fn).as_dict(),
                   "hallucination_rate": proportion(c.hallucinated, c.studies).as_dict()}
            positives = c.gated_tp + c.gated_fn
            if positives < MIN_POSITIVES:
                row["flag"] = f"too few gated positives ({positives})" if positives else "no gated positives"
            elif c.gated_tp / positives < settings.gate_sensitivity_min:
                row["flag"] = f"gated sensitivity below {settings.gate_sensitivity_min:.2f}"
                flagged.append(f"{attribute}={name}")
            rows.append(row)
        tpr_gap, fpr_gap = _gap(groups, gated)
        boot_tpr, boot_fpr = [], []
        if len(groups) > 1:
            names = list(groups)
            for _ in range(BOOTSTRAP):
                resampled = {n: [groups[n][i] for i in rng.integers(0, len(groups[n]), len(groups[n]))] for n in names}
                t, f = _gap(resampled, gated)
                if t is not None:
                    boot_tpr.append(t)
                if f is not None:
                    boot_fpr.append(f)
        gaps[attribute] = {"tpr_gap": tpr_gap, "fpr_gap": fpr_gap,
                           "tpr_gap_ci95": list(np.percentile(boot_tpr, [2.5, 97.5])) if boot_tpr else None,
                           "fpr_gap_ci95": list(np.percentile(boot_fpr, [2.5, 97.5])) if boot_fpr else None,
                           "groups": len(groups)}
    return {"source": source, "studies": len(studies), "gated_labels": sorted(gated),
            "gate_sensitivity_min": settings.gate_sensitivity_min,
            "overall": {"sensitivity": proportion(overall.tp, overall.tp + overall.fn).as_dict(),
                        "specificity": proportion(overall.tn, overall.tn + overall.fp).as_dict(),
                        "hallucination_rate": proportion(overall.hallucinated, overall.studies).as_dict()},
            "subgroups": rows, "equalised_odds": gaps, "flagged": flagged}


def _cell(p: dict) -> str:
    if p["value"] is None:
        return "—"
    return f"{100 * p['value']:.1f} [{100 * p['ci95'][0]:.1f}, {100 * p['ci95'][1]:.1f}] ({p['hits']}/{p['total']})"


def markdown(result: dict) -> str:
    lines = [f"# Bias audit ({result['source']}, {result['studies']} studies)", "",
             f"Gated observations: {', '.join(result['gated_labels'])}; gate {100 * result['gate_sensitivity_min']:.0f} %. "
             "Percentages with 95 % Wilson intervals.", "",
             "| attribute | group | studies | sensitivity | specificity | gated sensitivity | hallucination rate | flag |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["subgroups"]:
        lines.append(f"| {r['attribute']} | {r['group']} | {r['studies']} | {_cell(r['sensitivity'])} | "
                     f"{_cell(r['specificity'])} | {_cell(r['gated_sensitivity'])} | {_cell(r['hallucination_rate'])} | "
                     f"{r.get('flag', '')} |")
    lines += ["", "Equalised odds: the largest difference between an attribute's subgroups (bootstrap 95 % interval).", "",
              "| attribute | groups | TPR gap | FPR gap |", "|---|---|---|---|"]
    for attribute, g in result["equalised_odds"].items():
        lines.append(f"| {attribute} | {g['groups']} | {_gapcell(g['tpr_gap'], g['tpr_gap_ci95'])} | "
                     f"{_gapcell(g['fpr_gap'], g['fpr_gap_ci95'])} |")
    lines += ["", "**Flagged:** " + (", ".join(result["flagged"]) if result["flagged"] else "none")]
    return "\n".join(lines) + "\n"


def _gapcell(value: float | None, ci: list | None) -> str:
    if value is None:
        return "— (one group)"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def plot(result: dict, path: Path) -> Path:
    """Sensitivity and specificity per subgroup with their intervals, one panel per attribute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = [a for a in ATTRIBUTES if any(r["attribute"] == a for r in result["subgroups"])]
    fig, axes = plt.subplots(1, max(1, len(attributes)), figsize=(4 * max(1, len(attributes)), 3.6), squeeze=False)
    for ax, attribute in zip(axes[0], attributes, strict=False):
        rows = [r for r in result["subgroups"] if r["attribute"] == attribute]
        x = np.arange(len(rows))
        for offset, key, colour in ((-0.15, "sensitivity", "#1f77b4"), (0.15, "specificity", "#ff7f0e")):
            values = [r[key]["value"] for r in rows]
            lows = [r[key]["ci95"][0] for r in rows]
            highs = [r[key]["ci95"][1] for r in rows]
            ok = [i for i, v in enumerate(values) if v is not None]
            ax.errorbar(x[ok] + offset, [values[i] for i in ok],
                        yerr=[[max(0.0, values[i] - lows[i]) for i in ok], [max(0.0, highs[i] - values[i]) for i in ok]],
                        fmt="o", color=colour, label=key, capsize=3)
        ax.axhline(result["gate_sensitivity_min"], color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(x, [r["group"] for r in rows], rotation=30)
        ax.set_ylim(0, 1.05)
        ax.set_title(attribute)
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Bias audit: {result['source']} ({result['studies']} studies); dashed: the gate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
