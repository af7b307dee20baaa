"""The canary comparison: candidate against production on radiologist feedback, and the promote / hold /
roll-back decision.

The studies: every job drafted since the candidate became the canary that a radiologist has given feedback
on (the latest version counts). Two kinds of evidence, both from the same randomised trial:

- paired, on the same studies: during the canary both models run on every study (libs/lifecycle/trial.py),
  so each model's calls can be scored against the radiologist's (an explicit call, else, for a signed
  report, the call of the draft they signed). Per study: every call right or not (exact McNemar test on
  the discordant studies); per critical observation the radiologist called present: found or missed
  (McNemar again: critical sensitivity);
- between the arms (randomised by the study hash, so the arms are comparable): what the radiologists did
  with the draft they were shown: edit distance (Mann-Whitney), rejection (Fisher's exact test), the
  optional 1-5 rating (Mann-Whitney). These cannot be paired: a radiologist edits one draft, not two.

Bonferroni: with m tests run, each is significant at `canary_alpha` / m (family-wise `canary_alpha`,
default 0.01). Decision: "hold" until each arm has `canary_min_feedback` signed or rejected studies;
"rollback" when the candidate is significantly worse on any test; "promote" when it is significantly
better on at least one and worse on none; otherwise "hold" (no evidence either way yet).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from libs.core.config import Settings
from libs.domain.labels import CRITICAL_LABELS
from libs.domain.model_output import ModelOutput
from libs.feedback.quality import latest_feedback, radiologist_calls
from libs.lifecycle import registry
from libs.lifecycle.routing import CANARY_ARM, PRODUCTION_ARM
from libs.lifecycle.stats import fisher_exact, mann_whitney, mcnemar_exact, proportion
from libs.storage.db import session_scope
from libs.storage.models import JobRow, ModelEventRow, ModelOutputRow, ReportFeedbackRow


@dataclass
class ArmOutcome:
    edit_distances: list[float] = field(default_factory=list)
    rejected: int = 0
    reviewed: int = 0
    ratings: list[float] = field(default_factory=list)


@dataclass
class Paired:
    studies: int = 0
    candidate_only_right: int = 0  # every call right for the candidate, not for production
    production_only_right: int = 0
    candidate_right: int = 0
    production_right: int = 0
    critical_positives: int = 0
    candidate_only_found: int = 0
    production_only_found: int = 0
    candidate_found: int = 0
    production_found: int = 0


def _calls(output: ModelOutput) -> dict[str, bool]:
    return {p.label: p.positive for p in output.predictions if p.assessed and p.label != "No Finding"}


def _canary_since(session, model_id: str) -> dt.datetime | None:  # noqa: ANN001
    return session.scalar(select(func.max(ModelEventRow.at)).where(
        ModelEventRow.model_id == model_id, ModelEventRow.to_state == registry.CANARY))


def gather(engine: Engine, candidate: registry.ModelVersion, production: registry.ModelVersion):  # noqa: ANN201
    """(per-arm outcomes, paired scores) of the canary's studies with feedback."""
    arms = {PRODUCTION_ARM: ArmOutcome(), CANARY_ARM: ArmOutcome()}
    paired = Paired()
    with session_scope(engine) as session:
        since = _canary_since(session, candidate.id)
        if since is None:
            return arms, paired
        latest = latest_feedback()
        rows = session.execute(
            select(JobRow.model_arm, JobRow.model_output, ReportFeedbackRow.decision, ReportFeedbackRow.corrections,
                   ReportFeedbackRow.edit_distance, ReportFeedbackRow.rating, ModelOutputRow.output)
            .join(latest, latest.c.job_id == JobRow.id)
            .join(ReportFeedbackRow, (ReportFeedbackRow.job_id == JobRow.id) & (ReportFeedbackRow.version == latest.c.version))
            .outerjoin(ModelOutputRow, (ModelOutputRow.job_id == JobRow.id)
                       & (ModelOutputRow.model_id.in_([candidate.id, production.id])))
            .where(JobRow.created_at >= since, JobRow.model_arm.in_([PRODUCTION_ARM, CANARY_ARM]))
        ).all()
    for arm, served_json, decision, corrections, distance, rating, other_json in rows:
        outcome = arms[arm]
        outcome.reviewed += 1
        if decision == "rejected":
            outcome.rejected += 1
        else:
            outcome.edit_distances.append(float(distance or 0))
        if rating is not None:
            outcome.ratings.append(float(rating))
        if other_json is None:
            continue  # the other model's run failed or was skipped: no pair
        served, other = _calls(ModelOutput.model_validate(served_json)), _calls(ModelOutput.model_validate(other_json))
        cand, prod = (served, other) if arm == CANARY_ARM else (other, served)
        truth = radiologist_calls(decision, corrections, served)
        if not truth:
            continue
        paired.studies += 1
        c_ok = all(cand.get(k) == v for k, v in truth.items())
        p_ok = all(prod.get(k) == v for k, v in truth.items())
        paired.candidate_right += c_ok
        paired.production_right += p_ok
        paired.candidate_only_right += c_ok and not p_ok
        paired.production_only_right += p_ok and not c_ok
        for label in (k for k, v in truth.items() if v and k in CRITICAL_LABELS):
            paired.critical_positives += 1
            c_found, p_found = bool(cand.get(label)), bool(prod.get(label))
            paired.candidate_found += c_found
            paired.production_found += p_found
            paired.candidate_only_found += c_found and not p_found
            paired.production_only_found += p_found and not c_found
    return arms, paired


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compare(engine: Engine, settings: Settings, candidate_id: str) -> dict:
    """The comparison report with its decision (nothing stored; `cxr-report model compare` stores it)."""
    candidate = registry.get(engine, candidate_id)
    if candidate.state != registry.CANARY:
        raise registry.RegistryError(f"{candidate_id} is {candidate.state}, not the canary")
    production = registry.in_state(engine, registry.PRODUCTION)
    if production is None:
        raise registry.RegistryError("no production model to compare the canary with")
    arms, paired = gather(engine, candidate, production)
    can, prod = arms[CANARY_ARM], arms[PRODUCTION_ARM]
    tests = []  # (name, p, direction: +1 candidate better, -1 worse, 0 equal)

    def add(name: str, p: float, better: float | None) -> None:
        tests.append({"test": name, "p": p, "direction": 0 if not better else (1 if better > 0 else -1)})

    if paired.studies:
        add("paired: every call right (McNemar)", mcnemar_exact(paired.candidate_only_right, paired.production_only_right),
            paired.candidate_only_right - paired.production_only_right)
    if paired.critical_positives:
        add("paired: critical sensitivity (McNemar)",
            mcnemar_exact(paired.candidate_only_found, paired.production_only_found),
            paired.candidate_only_found - paired.production_only_found)
    if can.edit_distances and prod.edit_distances:
        add("arms: edit distance (Mann-Whitney)", mann_whitney(can.edit_distances, prod.edit_distances),
            (_mean(prod.edit_distances) or 0) - (_mean(can.edit_distances) or 0))
    if can.reviewed and prod.reviewed:
        add("arms: rejection rate (Fisher)", fisher_exact(can.rejected, can.reviewed, prod.rejected, prod.reviewed),
            prod.rejected / prod.reviewed - can.rejected / can.reviewed)
    if can.ratings and prod.ratings:
        add("arms: rating (Mann-Whitney)", mann_whitney(can.ratings, prod.ratings),
            (_mean(can.ratings) or 0) - (_mean(prod.ratings) or 0))
    per_test = settings.canary_alpha / max(1, len(tests))
    for t in tests:
        t["significant"] = t["p"] < per_test
    worse = [t["test"] for t in tests if t["significant"] and t["direction"] < 0]
    better = [t["test"] for t in tests if t["significant"] and t["direction"] > 0]
    enough = min(can.reviewed, prod.reviewed) >= settings.canary_min_feedback
    if not enough:
        decision, why = "hold", (f"{can.reviewed} canary and {prod.reviewed} production studies with feedback; "
                                 f"{settings.canary_min_feedback} per arm needed")
    elif worse:
        decision, why = "rollback", "candidate significantly worse: " + "; ".join(worse)
    elif better:
        decision, why = "promote", "candidate significantly better: " + "; ".join(better) + ", worse on none"
    else:
        decision, why = "hold", f"no test significant at {per_test:.4g} (Bonferroni over {len(tests)})"
    return {
        "candidate": candidate.id, "production": production.id, "decision": decision, "why": why,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "alpha": settings.canary_alpha, "tests_run": len(tests), "alpha_per_test": per_test, "tests": tests,
        "arms": {arm: {"reviewed": o.reviewed, "rejection_rate": proportion(o.rejected, o.reviewed).as_dict(),
                       "mean_edit_distance": _mean(o.edit_distances), "mean_rating": _mean(o.ratings),
                       "ratings": len(o.ratings)} for arm, o in arms.items()},
        "paired": {"studies": paired.studies,
                   "every_call_right": {"candidate": proportion(paired.candidate_right, paired.studies).as_dict(),
                                        "production": proportion(paired.production_right, paired.studies).as_dict()},
                   "critical_sensitivity": {
                       "candidate": proportion(paired.candidate_found, paired.critical_positives).as_dict(),
                       "production": proportion(paired.production_found, paired.critical_positives).as_dict()}},
    }


def markdown(report: dict) -> str:
    lines = [f"# Canary {report['candidate']} vs production {report['production']}", "",
             f"**Decision: {report['decision']}** — {report['why']}", "",
             "| arm | studies with feedback | rejection rate | mean edit distance | mean rating (n) |", "|---|---|---|---|---|"]
    for arm, a in report["arms"].items():
        rr = a["rejection_rate"]
        lines.append(f"| {arm} | {a['reviewed']} | {_pct(rr['value'])} {_ci(rr['ci95'])} | "
                     f"{_num(a['mean_edit_distance'])} | {_num(a['mean_rating'])} ({a['ratings']}) |")
    p = report["paired"]
    lines += ["", f"Paired on {p['studies']} studies (both models on each, against the radiologist's calls):", "",
              "| | candidate | production |", "|---|---|---|"]
    for key, name in (("every_call_right", "every call right"), ("critical_sensitivity", "critical sensitivity")):
        c, q = p[key]["candidate"], p[key]["production"]
        lines.append(f"| {name} | {_pct(c['value'])} {_ci(c['ci95'])} ({c['hits']}/{c['total']}) | "
                     f"{_pct(q['value'])} {_ci(q['ci95'])} ({q['hits']}/{q['total']}) |")
    lines += ["", f"Tests (Bonferroni: each at {report['alpha_per_test']:.4g} = {report['alpha']} / {report['tests_run']}):", "",
              "| test | p | favours | significant |", "|---|---|---|---|"]
    for t in report["tests"]:
        favours = {1: "candidate", -1: "production", 0: "neither"}[t["direction"]]
        lines.append(f"| {t['test']} | {t['p']:.4g} | {favours} | {'yes' if t['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _ci(ci: list) -> str:
    return "" if not ci or ci[0] is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"
