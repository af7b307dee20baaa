"""Pipeline metrics read from the shared state at scrape time: jobs by state, dead letters and what
radiologists' feedback says about the model over a rolling window (SQL; libs/feedback/quality.py),
messages waiting and the age of the oldest one per step queue (Redis).

Collected by the gateway only, in a registry of its own (`pipeline_registry`): every worker would
report the same numbers, and summing them across processes would multiply them. A source that
cannot be read leaves its series out and sets `cxr_pipeline_source_up{source=...}` to 0, so a dead
database shows as that, not as "zero jobs". Labels: states, queue names, decisions, observations and
outcomes only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from libs.automation.switch import AUTOMATIC, CO_SIGN
from libs.domain.job import JobState
from libs.pipeline.dispatch import SENT_AT_HEADER
from libs.pipeline.messages import Step

log = logging.getLogger(__name__)

# kombu's Redis transport keeps priority p of queue q in the list "q\x06\x16p" (p = 1..9; p = 0 is "q"
# itself, libs/queue/celery_app.py priority_steps 0-9) and pushes on the left: the oldest is at -1.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = range(10)


def queue_keys(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS]


def _sent_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None  # a message from before this header existed, or not ours


class PipelineCollector(Collector):
    def __init__(self, engine: Engine, redis_url: str | None, feedback_window_days: float = 30.0) -> None:
        self.engine = engine
        self.redis_url = redis_url  # None: the in-process queue, nothing to read
        self.window_days = feedback_window_days
        self._redis = None

    def _client(self):  # noqa: ANN202 - redis.Redis
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        return self._redis

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("cxr_pipeline_source_up", "1 when the pipeline metrics could read this source",
                               labels=["source"])
        yield from self._database(up)
        if self.redis_url is not None:
            yield from self._queues(up)
        yield up

    def _database(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        from libs.storage import crud
        from libs.storage.db import session_scope
        from libs.storage.models import JobRow

        try:
            with session_scope(self.engine) as session:
                counts = dict(session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all())
                dead = crud.count_dead_letters(session)
        except Exception as exc:  # noqa: BLE001 - reported as source down
            log.warning("pipeline metrics: database unreadable (%s)", type(exc).__name__)
            up.add_metric(["database"], 0)
            return
        up.add_metric(["database"], 1)
        jobs = GaugeMetricFamily("cxr_jobs", "Jobs by state (terminal states included)", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        yield jobs
        yield GaugeMetricFamily("cxr_dead_letters", "Jobs given up on although their input was fine "
                                "(retries or SR store-back attempts ran out), waiting for ops", value=dead)
        yield from self._feedback()
        yield from self._lifecycle()

    def _feedback(self) -> Iterator[GaugeMetricFamily]:
        from libs.feedback.quality import OUTCOMES, window_quality

        try:
            q = window_quality(self.engine, self.window_days)
        except Exception as exc:  # noqa: BLE001 - the other series still go out
            log.warning("pipeline metrics: feedback unreadable (%s)", type(exc).__name__)
            return
        yield GaugeMetricFamily("cxr_feedback_window_days", "Rolling window of the feedback metrics", value=q.window_days)
        decisions = GaugeMetricFamily("cxr_feedback_reports", "Reports with radiologist feedback in the window, "
                                      "by the latest decision", labels=["decision"])
        for decision in ("accepted", "edited", "rejected"):
            decisions.add_metric([decision], q.decisions[decision])
        yield decisions
        for decision, name in (("rejected", "cxr_feedback_rejection_rate"), ("edited", "cxr_feedback_edit_rate")):
            if (rate := q.rate(decision)) is not None:
                yield GaugeMetricFamily(name, f"Share of reviewed reports {decision} in the window", value=rate)
        if q.edit_distances:
            yield GaugeMetricFamily("cxr_feedback_edit_distance_chars", "Mean Levenshtein distance, draft findings + "
                                    "impression to the signed text, of edited reports in the window",
                                    value=sum(q.edit_distances) / len(q.edit_distances))
            yield GaugeMetricFamily("cxr_feedback_edit_fraction", "Mean edit distance as a fraction of the draft's "
                                    "length, edited reports in the window",
                                    value=sum(q.edit_fractions) / len(q.edit_fractions))
        calls = GaugeMetricFamily("cxr_head_calls", "The detection head's calls against the radiologist's final call "
                                  "in the window (tp, fp, tn, fn)", labels=["observation", "outcome"])
        sens = GaugeMetricFamily("cxr_head_sensitivity", "TP / (TP + FN) against radiologists, in the window",
                                 labels=["observation"])
        spec = GaugeMetricFamily("cxr_head_specificity", "TN / (TN + FP) against radiologists, in the window",
                                 labels=["observation"])
        for label, counts in sorted(q.calls.items()):
            for outcome in OUTCOMES:
                calls.add_metric([label, outcome], counts[outcome])
            if (v := q.sensitivity(counts)) is not None:
                sens.add_metric([label], v)
            if (v := q.specificity(counts)) is not None:
                spec.add_metric([label], v)
        yield calls
        yield sens
        yield spec
        critical = q.critical()
        if (v := q.sensitivity(critical)) is not None:
            yield GaugeMetricFamily("cxr_head_critical_sensitivity", "Sensitivity pooled over the critical "
                                    "observations, against radiologists, in the window", value=v)
        if (v := q.specificity(critical)) is not None:
            yield GaugeMetricFamily("cxr_head_critical_specificity", "Specificity pooled over the critical "
                                    "observations, against radiologists, in the window", value=v)

    def _lifecycle(self) -> Iterator[GaugeMetricFamily]:
        """The registry's models and the canary, the latest drift check per signal, the last rollback, and
        per-observation F1 against radiologists this week and over the window (concept drift)."""
        from libs.feedback.quality import window_quality
        from libs.lifecycle import drift, registry

        try:
            models = [m for m in registry.all_models(self.engine) if m.state != registry.RETIRED]
            checks = drift.latest_checks(self.engine)
            rolled_back = registry.last_rollback(self.engine)
            week, window = window_quality(self.engine, 7.0), window_quality(self.engine, self.window_days)
        except Exception as exc:  # noqa: BLE001 - the other series still go out
            log.warning("pipeline metrics: model lifecycle unreadable (%s)", type(exc).__name__)
            return
        info = GaugeMetricFamily("cxr_model_state", "1 per registered model in its lifecycle state",
                                 labels=["model", "state"])
        for m in models:
            info.add_metric([m.id, m.state], 1)
        yield info
        if rolled_back is not None:
            yield GaugeMetricFamily("cxr_model_last_rollback_timestamp_seconds", "When the model was last rolled back",
                                    value=rolled_back.timestamp())
        families = {name: GaugeMetricFamily(name, doc, labels=["signal"]) for name, doc in (
            ("cxr_drift_p_value", "p-value of the latest drift check against the model's validation reference"),
            ("cxr_drift_statistic", "Statistic of the latest drift check (MMD², chi-square, KS, rate difference)"),
            ("cxr_drift_alarm", "1 when the latest drift check alarmed (Bonferroni within its family)"),
            ("cxr_drift_samples", "Recent studies the latest drift check compared"))}
        for c in checks:
            families["cxr_drift_p_value"].add_metric([c.signal], c.p_value)
            families["cxr_drift_statistic"].add_metric([c.signal], c.statistic)
            families["cxr_drift_alarm"].add_metric([c.signal], int(c.alarm))
            families["cxr_drift_samples"].add_metric([c.signal], c.samples)
        yield from families.values()
        f1 = GaugeMetricFamily("cxr_head_f1", "F1 of the head against radiologists' calls (window: the feedback "
                               "window; 7d: the last week)", labels=["observation", "window"])
        cases = GaugeMetricFamily("cxr_head_f1_cases", "Calls the F1 is computed on", labels=["observation", "window"])
        for name, quality in (("7d", week), ("window", window)):
            for label, counts in sorted(quality.calls.items()):
                if (value := quality.f1(counts)) is not None:
                    f1.add_metric([label, name], value)
                    cases.add_metric([label, name], sum(counts.values()))
        yield f1
        yield cases

    def _queues(self, up: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("cxr_queue_messages", "Messages waiting in a step's queue", labels=["queue"])
        age = GaugeMetricFamily("cxr_queue_oldest_message_age_seconds",
                                "Age of the oldest waiting message of a step's queue (0 when empty)", labels=["queue"])
        now = time.time()
        try:
            pipe = self._client().pipeline(transaction=False)
            for step in Step:
                for key in queue_keys(step.value):
                    pipe.llen(key)
                    pipe.lindex(key, -1)
            replies = pipe.execute()
        except Exception as exc:  # noqa: BLE001
            log.warning("pipeline metrics: Redis unreadable (%s)", type(exc).__name__)
            up.add_metric(["redis"], 0)
            return
        up.add_metric(["redis"], 1)
        per_queue = len(PRIORITY_STEPS) * 2
        for i, step in enumerate(Step):
            mine = replies[i * per_queue:(i + 1) * per_queue]
            lengths, oldest = mine[0::2], [_sent_at(raw) for raw in mine[1::2]]
            stamps = [t for t in oldest if t is not None]
            depth.add_metric([step.value], sum(int(n or 0) for n in lengths))
            age.add_metric([step.value], max(0.0, now - min(stamps)) if stamps else 0.0)
        yield depth
        yield age


def pipeline_registry(engine: Engine, redis_url: str | None, feedback_window_days: float = 30.0) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(engine, redis_url, feedback_window_days))
    return registry


def readiness_text(ready: bool, checks: dict[str, str], workers: dict[str, list[str]], automation_mode: str) -> bytes:
    """What /readyz found, as series: cxr_ready, cxr_ready_check{check}, cxr_step_workers{step} and
    cxr_automation_paused (left out when the mode could not be read)."""
    registry = CollectorRegistry(auto_describe=False)

    class _Readiness(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            yield GaugeMetricFamily("cxr_ready", "1 when /readyz answers ready", value=int(ready))
            each = GaugeMetricFamily("cxr_ready_check", "1 per readiness check that passes", labels=["check"])
            for name, result in sorted(checks.items()):
                each.add_metric([name], int(result == "ok"))
            yield each
            live = GaugeMetricFamily("cxr_step_workers", "Live workers per step (heartbeats)", labels=["step"])
            for step, names in sorted(workers.items()):
                live.add_metric([step], len(names))
            yield live
            if automation_mode in (AUTOMATIC, CO_SIGN):
                yield GaugeMetricFamily("cxr_automation_paused", "1 in co-sign mode (automation paused): every "
                                        "report waits for a radiologist and nothing is sent to a PACS by itself",
                                        value=int(automation_mode == CO_SIGN))

    registry.register(_Readiness())
    from prometheus_client import generate_latest

    return generate_latest(registry)
