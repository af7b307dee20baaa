"""`make chaos`: 200 studies through the real stack while workers are SIGKILLed and Redis restarts;
afterwards every requested study must have exactly one reviewed job, each state once in job_events.

The stack (bench/reliability/stack.py) runs a PRIVATE redis-server on a free loopback port without
persistence, so a restart loses every queued and unacknowledged message; the four step workers, the
reconciler (`python -m services.reconciler`) and the gateway, with short reliability settings:
CXR_VISIBILITY_TIMEOUT_S=8 (a dead worker's message comes back), CXR_RECONCILE_STALE_S=15 and
CXR_RECONCILE_INTERVAL_S=2 (a lost message is sent again). The model is a TEST-ONLY random-weight bundle
at the real 512 px input (libs.bundle.testing.build_random_bundle), to keep the run short; the images
are the real chest CR (pydicom-data RG1_UNCR) with fresh UIDs.

Study i starts at i x --window / --studies seconds (open-loop arrivals, so a backlog builds whenever the
pipeline is slower, and a Redis restart has queued messages to lose), at most --clients uploading at
once: it is pushed as a PACS, its report requested as an EHR (5xx and transport errors are retried,
with the same Idempotency-Key: while Redis is down the gateway answers 503 and keeps nothing), then it
is long-polled until reviewed. Meanwhile a driver, at random times within the window (seeded):
SIGKILLs the worker process of a random step --kills times (its supervisor, services/supervisor.py,
starts a new one, as in production), and --redis-restarts times kills redis-server with SIGKILL and
starts an empty one on the same port. Any process that exits on its own is restarted too (and counted). Then the run drains: it waits until no job in the database is unfinished.

Counted from the database (jobs + job_events): lost (a requested study without a reviewed job) and
duplicated (a study with more than one job, or a job that entered some state more than once). Writes
bench/results/chaos.json and prints `reports lost: N, duplicated: M`. The whole run is bounded by
--max-seconds (900): past it the run stops, says so, and exits 1, as it does on anything lost or duplicated.

  python -m bench.reliability.chaos [--studies 200] [--kills 20] [--redis-restarts 2] [--seed 14]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.reliability.stack import (
    REPO_ROOT,
    RESULTS_DIR,
    SERVICES,
    Stack,
    StackError,
    install_signal_handlers,
    log,
)
from bench.reliability.workload import (
    Recorder,
    StudyFactory,
    account,
    get_report,
    percentiles,
    request_report,
    stow,
    summarize_requests,
    summary_line,
    unfinished_jobs,
)

CHAOS_ENV = {
    "CXR_VISIBILITY_TIMEOUT_S": "8",
    "CXR_RECONCILE_STALE_S": "15",
    "CXR_RECONCILE_INTERVAL_S": "2",
}
LONG_POLL_S = 20.0
_TASK = re.compile(r"Task (cxr\.\w+)\[([0-9a-f-]+)\] (received|succeeded|retry|raised|failed)")


def in_flight_tasks(log_path: Path, pid: int) -> list[str]:
    """Tasks the log of worker `pid` shows received and not finished (what a SIGKILL interrupts).
    The log is its supervisor's, shared by each worker it started: read from this one's start."""
    open_: dict[str, str] = {}
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    marker = f"worker started (pid {pid})"
    text = text[text.rfind(marker):] if marker in text else text
    for name, task_id, what in _TASK.findall(text):
        if what == "received":
            open_[task_id] = name
        else:
            open_.pop(task_id, None)
    return sorted(set(open_.values()))


def schedule(rng: random.Random, window: float, kills: int, redis_restarts: int) -> list[tuple[float, str]]:
    """(time, action) pairs inside the window: kills at random times, Redis restarts spread evenly
    (jittered) so they do not all land at the start or the end."""
    events = [(rng.uniform(3.0, window), "kill") for _ in range(kills)]
    for i in range(redis_restarts):
        centre = window * (i + 1) / (redis_restarts + 1)
        events.append((rng.uniform(centre - window * 0.08, centre + window * 0.08), "redis"))
    return sorted(events)


async def run_chaos(stack: Stack, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    rng = random.Random(args.seed)
    factory = StudyFactory()
    rec = Recorder()
    requested: set[str] = set()
    reports: list[dict[str, Any]] = []
    abandoned: list[str] = []
    not_requested: list[dict[str, str]] = []
    events_done: list[dict[str, Any]] = []
    self_exits: list[dict[str, Any]] = []
    pacs, ehr = stack.keys["pacs"], stack.keys["ehr"]
    interval = args.window / args.studies
    client_end = deadline - 45.0  # leaves time to drain what is left, count, stop

    uploads = asyncio.Semaphore(args.clients)

    async def one_study(client: httpx.AsyncClient, i: int) -> None:
        """Study i starts at i * window / studies (open-loop arrivals: a backlog builds when the
        pipeline is slower), at most --clients uploading at once; then it is long-polled."""
        if (pause := rec.t0 + i * interval - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        async with uploads:
            uid, body = await factory.amake()
            t_start = time.monotonic()
            resp = None
            while time.monotonic() < client_end:
                resp = await stow(client, rec, pacs, body)
                if resp is not None and resp.status_code < 500:
                    break
                await asyncio.sleep(1.0)
            del body
            if resp is None or resp.status_code != 200:
                not_requested.append({"study": uid, "why": f"stow {resp.status_code if resp else 'transport error'}"})
                return
            idem = f"chaos-{uuid.uuid4().hex}"
            resp = None
            while time.monotonic() < client_end:
                resp = await request_report(client, rec, ehr, uid, idem)
                if resp is not None and resp.status_code < 500:
                    break
                await asyncio.sleep(1.0)
            if resp is None or resp.status_code not in (200, 202):
                not_requested.append({"study": uid, "why": f"request {resp.status_code if resp else 'transport error'}"})
                return
            requested.add(uid)
        t_req = time.monotonic()
        status = None
        while time.monotonic() < client_end:
            resp = await get_report(client, rec, ehr, uid, min(LONG_POLL_S, max(1.0, client_end - time.monotonic())))
            if resp is not None and resp.status_code == 200:
                status = resp.json().get("status")
                break
            if resp is None or resp.status_code != 202:
                await asyncio.sleep(1.0)
        if status is None:
            abandoned.append(uid)
            return
        t_done = time.monotonic()
        reports.append({"status": status, "e2e_s": t_done - t_start, "report_s": t_done - t_req})

    async def unfinished() -> int | None:
        try:
            return await asyncio.to_thread(unfinished_jobs, stack.engine)
        except Exception:  # noqa: BLE001
            return None

    async def worker(svc: str, not_pid: int | None = None, wait_s: float = 60.0) -> int | None:
        """The pid of `svc`'s worker process (other than `not_pid`), waiting while it is being restarted."""
        until = time.monotonic() + wait_s
        while time.monotonic() < until:
            pid = stack.worker_pid(svc) if svc in stack.procs else None
            if pid is not None and pid != not_pid:
                return pid
            await asyncio.sleep(0.2)
        return None

    async def driver() -> None:
        for at, action in schedule(rng, args.window, args.kills, args.redis_restarts):
            if (pause := rec.t0 + at - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            if action == "kill":
                svc = rng.choice(SERVICES)
                proc = stack.procs.get(svc)
                if proc is None:  # being restarted after exiting on its own
                    continue
                pid = await worker(svc)
                if pid is None:
                    continue
                busy = in_flight_tasks(proc.log_path, pid)
                try:
                    os.kill(pid, signal.SIGKILL)  # the worker, not its supervisor: that one starts another
                except ProcessLookupError:
                    continue
                ev = {"at": round(rec.now(), 1), "action": "SIGKILL", "service": svc, "pid": pid,
                      "tasks_in_flight_per_its_log": busy, "unfinished_jobs": await unfinished()}
                ev["replacement_pid"] = await worker(svc, not_pid=pid)
            else:
                depths = {}
                try:
                    depths = await asyncio.to_thread(stack.queue_depths)
                except Exception:  # noqa: BLE001
                    pass
                ev = {"at": round(rec.now(), 1), "action": "redis kill -9 + start", "queued_messages_lost": depths,
                      "unfinished_jobs": await unfinished()}
                stack.kill_redis()
                await asyncio.sleep(args.redis_down)
                stack.start_redis()
                ev["redis_down_s"] = args.redis_down
            events_done.append(ev)
            log(f"chaos: t={ev['at']:.0f}s {ev['action']} {ev.get('service', '')} "
                f"(unfinished jobs {ev['unfinished_jobs']}, in flight {ev.get('tasks_in_flight_per_its_log', ev.get('queued_messages_lost'))})")

    async def supervisor() -> None:
        """The orchestrator's other half: whatever exits on its own is started again."""
        while True:
            for name, rc in stack.exited():
                self_exits.append({"at": round(rec.now(), 1), "service": name, "exit_code": rc})
                log(f"chaos: {name} exited on its own with {rc}; restarting it")
                stack.start_process(name)
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=args.studies + args.clients + 10, max_keepalive_connections=args.studies + args.clients + 10)
    async with httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=httpx.Timeout(120.0, connect=20.0)) as client:
        log(f"chaos: {args.studies} studies over ~{args.window:g} s by {args.clients} clients; {args.kills} worker "
            f"SIGKILLs and {args.redis_restarts} Redis restarts inside the window (seed {args.seed})")
        sup = asyncio.create_task(supervisor())
        drv = asyncio.create_task(driver())
        clients = asyncio.gather(*(one_study(client, i) for i in range(args.studies)))
        await asyncio.wait({drv, asyncio.ensure_future(clients)}, return_when=asyncio.ALL_COMPLETED,
                           timeout=max(1.0, client_end - time.monotonic() + 5))
        if not drv.done():
            drv.cancel()
        clients_done = rec.now()
        log(f"chaos: clients done at t={clients_done:.0f}s ({len(reports)} reports received); draining")
        left = None
        while time.monotonic() < deadline - 15:
            left = await unfinished()
            if left == 0:
                break
            await asyncio.sleep(1.0)
        drained_at = rec.now()
        sup.cancel()

    acc = await asyncio.to_thread(account, stack.engine, requested)
    return {
        "drained": left == 0,
        "unfinished_jobs_at_end": left,
        "timeline_s": {"window": args.window, "clients_done": round(clients_done, 1), "drained": round(drained_at, 1)},
        "chaos_events": events_done,
        "kills_done": sum(1 for e in events_done if e["action"] == "SIGKILL"),
        "kills_with_a_task_in_flight": sum(1 for e in events_done if e.get("tasks_in_flight_per_its_log")),
        "kills_by_service": {s: sum(1 for e in events_done if e.get("service") == s) for s in SERVICES},
        "redis_restarts_done": sum(1 for e in events_done if e["action"].startswith("redis")),
        "processes_exited_on_their_own": self_exits,
        # Each worker's supervisor logs every restart: the 20 kills, plus any death that was not ours
        # (Celery's "Unrecoverable error" after a Redis restart, docs/reliability.md).
        "worker_restarts_by_supervisors": sum(p.read_text(errors="replace").count("; starting it again")
                                              for p in stack.log_dir.glob("*.log")),
        "requests": summarize_requests(rec.samples, drained_at),
        "studies": {"planned": args.studies, "requested": len(requested), "not_requested": not_requested,
                    "reports_received": len(reports),
                    "reviewed_received": sum(1 for r in reports if r["status"] == "reviewed"),
                    "failed_received": sum(1 for r in reports if r["status"] == "failed"),
                    "abandoned_by_client": len(abandoned),
                    "end_to_end": percentiles([r["e2e_s"] for r in reports if r["status"] == "reviewed"]),
                    "request_to_report": percentiles([r["report_s"] for r in reports if r["status"] == "reviewed"])},
        "database": acc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8, help="uploads in flight at most (each study is then long-polled)")
    ap.add_argument("--window", type=float, default=60.0, help="studies start, and chaos happens, within this many seconds")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--redis-restarts", type=int, default=2)
    ap.add_argument("--redis-down", type=float, default=1.0, help="seconds Redis stays down per restart")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="bound on the whole run, start-up included")
    ap.add_argument("--bundle", type=Path, default=None, help="default: a random-weight 512 px TEST bundle")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "chaos.json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    install_signal_handlers()
    begun = time.monotonic()
    deadline = begun + args.max_seconds
    started = time.time()
    if not (REPO_ROOT / "services" / "reconciler" / "__main__.py").is_file():
        log("chaos: FAILED: services/reconciler is missing; the run needs `python -m services.reconciler`")
        return 2
    bundle_tmp = None
    bundle = args.bundle
    if bundle is None:
        from libs.bundle.testing import build_random_bundle

        bundle_tmp = Path(tempfile.mkdtemp(prefix="cxr-chaos-bundle-"))
        bundle = build_random_bundle(bundle_tmp / "random512", image_size=512)
        log("chaos: model = TEST-ONLY random-weight bundle, 512 px input (libs.bundle.testing), "
            "to keep the run short; the figures are about delivery, not about the model")
    result: dict[str, Any] = {}
    try:
        with Stack(bundle=bundle, label="chaos", reconciler=True, extra_env=CHAOS_ENV, keep=args.keep) as stack:
            result = asyncio.run(run_chaos(stack, args, deadline))
            result["logs"] = str(stack.log_dir.relative_to(REPO_ROOT))
    except StackError as exc:
        log(f"chaos: FAILED to run: {exc}")
        return 2
    finally:
        if bundle_tmp is not None:
            shutil.rmtree(bundle_tmp, ignore_errors=True)
    acc = result["database"]
    elapsed = time.monotonic() - begun
    doc = {
        "benchmark": "chaos: worker SIGKILLs and Redis restarts during a run; lost/duplicated from the database",
        "command": "python -m bench.reliability.chaos " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(elapsed, 1),
        "host": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "bundle")},
                     "bundle": str(args.bundle) if args.bundle else "TEST-ONLY random-weight bundle, 512 px input",
                     "env": CHAOS_ENV, "long_poll_s": LONG_POLL_S,
                     "study": "pydicom-data RG1_UNCR.dcm (real chest CR, 1955x1841, ~7 MB) with fresh UIDs",
                     "stack": "private redis-server (no persistence), private PostgreSQL database, 4 Celery step "
                              "workers, reconciler, 1 gateway process, all on 127.0.0.1"},
        "summary": summary_line(acc),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    st = result["studies"]
    log(f"chaos: {result['kills_done']} SIGKILLs ({result['kills_with_a_task_in_flight']} with a task in flight, "
        f"{result['kills_by_service']}), {result['redis_restarts_done']} Redis restarts, "
        f"{len(result['processes_exited_on_their_own'])} processes exited on their own")
    log(f"chaos: studies requested {st['requested']}/{st['planned']}, reviewed reports received {st['reviewed_received']}; "
        f"database: jobs {acc['jobs_by_state']}, exact event sequences {acc['reviewed_with_exact_event_sequence']}, "
        f"requeued by the reconciler {acc['jobs_requeued_by_reconciler']} jobs ({acc['reconciler_requeues_total']} sends); "
        f"errors {result['requests']['errors']}")
    if not result["drained"]:
        log(f"chaos: FAILED: {result['unfinished_jobs_at_end']} jobs still unfinished when the "
            f"{args.max_seconds:g} s bound ran out")
    log(f"chaos: {elapsed:.0f} s in all; written {args.out}")
    print(f"lost: {acc['lost']}, duplicated: {acc['duplicated']} (random-weight 512 px TEST bundle)", flush=True)
    print(summary_line(acc), flush=True)
    ok = result["drained"] and acc["lost"] == 0 and acc["duplicated"] == 0 and st["requested"] == st["planned"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
