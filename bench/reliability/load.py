"""`make load`: N concurrent clients against the real stack for a fixed time; lost and duplicated
reports counted from the database.

Starts the whole platform on loopback (bench/reliability/stack.py: private redis-server, private
PostgreSQL database, the four Celery step workers, the gateway on a free port, CXR_QUEUE_BACKEND=celery)
with the reference bundle models/reference (the real model) unless --bundle says otherwise. Then
--clients asyncio clients (httpx), for --seconds, each in a loop:

  1. STOW-RS one study with a pacs key: pydicom-data's real chest CR (RG1_UNCR, 1955 x 1841, ~7 MB)
     with new Study/Series/SOP Instance UIDs;
  2. POST /api/v1/studies/{uid}/report with an ehr key (an Idempotency-Key per study, so a retry after
     a timeout or 5xx is safe; each attempt is counted);
  3. GET /api/v1/studies/{uid}/report?wait=30 (long-poll) until the job is reviewed (or failed).

After --seconds no client starts a new study; each finishes the one it has, then the run waits until
no job in the database is unfinished (at most --drain seconds). Measured: requests/s, P50/P99 latency
per request kind, end-to-end latency per study (STOW start -> reviewed report received), errors by
status, queue depths, CPU seconds per process; and from the database (jobs + job_events), the line

  reports lost: N, duplicated: M

(lost = requested with a 202/200 but no reviewed job after the drain; duplicated = a study with more
than one job, or a job that entered some state twice). Writes bench/results/load.json. Every process
is stopped at the end, also on errors, Ctrl-C and SIGTERM. Exit 1 when anything was lost or duplicated.

  python -m bench.reliability.load [--clients 50] [--seconds 120] [--drain 300] [--bundle models/reference]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.reliability.stack import REPO_ROOT, RESULTS_DIR, Stack, StackError, install_signal_handlers, log
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

LONG_POLL_S = 30.0
RETRIES = 5


async def _retrying(call, attempts: int = RETRIES):  # noqa: ANN001, ANN202 - call() -> awaitable response
    """A client's retry: on a transport error or a 5xx, back off and send the same request again."""
    resp = None
    for attempt in range(attempts):
        resp = await call()
        if resp is not None and resp.status_code < 500:
            return resp
        await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt))
    return resp


async def run_load(stack: Stack, clients: int, seconds: float, drain: float) -> dict[str, Any]:
    factory = StudyFactory()
    rec = Recorder()
    requested: set[str] = set()
    studies: list[dict[str, Any]] = []
    abandoned: list[str] = []
    not_requested = {"stow_failed": 0, "request_failed": 0}
    depths: list[dict[str, Any]] = []
    load_end = rec.t0 + seconds
    hard_end = load_end + drain
    limits = httpx.Limits(max_connections=clients * 2 + 10, max_keepalive_connections=clients * 2 + 10)
    timeout = httpx.Timeout(180.0, connect=30.0)
    pacs, ehr = stack.keys["pacs"], stack.keys["ehr"]

    async def one_client(client: httpx.AsyncClient) -> None:
        while time.monotonic() < load_end:
            uid, body = await factory.amake()
            t_start = time.monotonic()
            r = await _retrying(lambda: stow(client, rec, pacs, body))
            if r is None or r.status_code != 200:
                not_requested["stow_failed"] += 1
                continue
            t_stored = time.monotonic()
            idem = f"load-{uuid.uuid4().hex}"
            r = await _retrying(lambda: request_report(client, rec, ehr, uid, idem))
            if r is None or r.status_code not in (200, 202):
                not_requested["request_failed"] += 1
                continue
            requested.add(uid)
            t_req = time.monotonic()
            status = None
            while time.monotonic() < hard_end:
                r = await get_report(client, rec, ehr, uid, min(LONG_POLL_S, max(1.0, hard_end - time.monotonic())))
                if r is None or r.status_code >= 500:
                    await asyncio.sleep(1.0)
                    continue
                if r.status_code == 200:
                    status = r.json().get("status")
                    break
                if r.status_code != 202:
                    await asyncio.sleep(1.0)
            t_done = time.monotonic()
            if status is None:
                abandoned.append(uid)
                continue
            studies.append({"status": status, "e2e_s": t_done - t_start, "report_s": t_done - t_req,
                            "stow_s": t_stored - t_start, "done_at": t_done - rec.t0})

    async def sample_queues() -> None:
        while time.monotonic() < hard_end:
            try:
                d = await asyncio.to_thread(stack.queue_depths)
                depths.append({"at": round(rec.now(), 1), **d})
            except Exception:  # noqa: BLE001 - informational only
                pass
            await asyncio.sleep(5.0)

    async with httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=timeout) as client:
        log(f"load: {clients} clients for {seconds:g} s (then up to {drain:g} s of drain)")
        sampler = asyncio.create_task(sample_queues())

        async def progress() -> None:
            while time.monotonic() < load_end:
                await asyncio.sleep(15)
                log(f"load: t={rec.now():.0f}s requests={len(rec.samples)} requested={len(requested)} "
                    f"reviewed={sum(1 for s in studies if s['status'] == 'reviewed')} queues={depths[-1] if depths else {}}")

        prog = asyncio.create_task(progress())
        await asyncio.gather(*(one_client(client) for _ in range(clients)))
        prog.cancel()
        clients_done = rec.now()
        log(f"load: clients finished at t={clients_done:.0f}s; waiting for the database to drain")
        while time.monotonic() < hard_end:
            left = await asyncio.to_thread(unfinished_jobs, stack.engine)
            if left == 0:
                break
            await asyncio.sleep(1.0)
        drained_at = rec.now()
        sampler.cancel()

    in_window = [s for s in rec.samples if s.at < seconds]
    reviewed = [s for s in studies if s["status"] == "reviewed"]
    acc = await asyncio.to_thread(account, stack.engine, requested)
    return {
        "requests_in_load_window": summarize_requests(in_window, seconds),
        "requests_all": summarize_requests(rec.samples, drained_at),
        "studies": {
            "requested": len(requested),
            "reports_received": len(studies),
            "reviewed_received": len(reviewed),
            "failed_received": sum(1 for s in studies if s["status"] == "failed"),
            "abandoned_by_client_at_drain_deadline": len(abandoned),
            "not_requested": not_requested,
            "reviewed_in_load_window": sum(1 for s in reviewed if s["done_at"] < seconds),
            "reviewed_per_minute_in_load_window": round(sum(1 for s in reviewed if s["done_at"] < seconds) / seconds * 60, 1),
            "end_to_end": percentiles([s["e2e_s"] for s in reviewed]),
            "request_to_report": percentiles([s["report_s"] for s in reviewed]),
            "stow_with_retries": percentiles([s["stow_s"] for s in reviewed]),
        },
        "timeline_s": {"load": seconds, "clients_done": round(clients_done, 1), "drained": round(drained_at, 1),
                       "drain_limit": drain, "drained_fully": drained_at < seconds + drain},
        "queue_depths": {"max": {q: max((d.get(q, 0) for d in depths), default=0) for q in ("ingestion", "inference", "formatting", "qa")},
                         "samples_every_5s": depths},
        "database": acc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=120.0, help="load window (no new study after it)")
    ap.add_argument("--drain", type=float, default=300.0, help="at most this long after the window for the backlog")
    ap.add_argument("--bundle", type=Path, default=REPO_ROOT / "models" / "reference")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "load.json")
    ap.add_argument("--keep", action="store_true", help="keep the database and data directory")
    args = ap.parse_args(argv)
    install_signal_handlers()
    started = time.time()
    stack = Stack(bundle=args.bundle, label="load", keep=args.keep)
    result: dict[str, Any] = {}
    cpu_before: dict[str, float] = {}
    try:
        with stack:
            cpu_before = stack.cpu_seconds()
            self_before = resource.getrusage(resource.RUSAGE_SELF)
            result = asyncio.run(run_load(stack, args.clients, args.seconds, args.drain))
            cpu_after = stack.cpu_seconds()
            self_after = resource.getrusage(resource.RUSAGE_SELF)
            result["cpu_seconds_during_run"] = {
                **{n: round(cpu_after[n] - cpu_before.get(n, 0.0), 1) for n in cpu_after},
                "load_client": round((self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime), 1),
            }
            result["processes_exited_during_run"] = stack.exited()
    except StackError as exc:
        log(f"load: FAILED to run: {exc}")
        return 2
    acc = result["database"]
    doc = {
        "benchmark": "load: concurrent clients, STOW-RS + report request + long-poll until reviewed",
        "command": "python -m bench.reliability.load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "host": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "settings": {"clients": args.clients, "seconds": args.seconds, "drain": args.drain,
                     "bundle": str(args.bundle), "long_poll_s": LONG_POLL_S, "client_retries": RETRIES,
                     "study": "pydicom-data RG1_UNCR.dcm (real chest CR, 1955x1841, 16-bit, ~7 MB) with fresh UIDs",
                     "stack": "private redis-server, private PostgreSQL database, 4 Celery step workers "
                              "(inference with dynamic batching), 1 gateway process, all on 127.0.0.1"},
        "summary": summary_line(acc),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    req = result["requests_in_load_window"]
    st = result["studies"]
    log(f"load: {req['total']} requests in the {args.seconds:g} s window = {req['per_s']} requests/s; "
        f"errors {req['error_total']} {req['errors']}")
    for kind, k in req["by_kind"].items():
        log(f"load:   {kind:15s} {k['count']:6d}  {k['per_s']:7.2f}/s  P50 {k['latency_ok'].get('p50_ms')} ms  "
            f"P99 {k['latency_ok'].get('p99_ms')} ms  status {k['status']}")
    log(f"load: studies requested {st['requested']}, reviewed {st['reviewed_received']} "
        f"({st['reviewed_per_minute_in_load_window']}/min in the window); end-to-end P50 "
        f"{st['end_to_end'].get('p50_ms')} ms P99 {st['end_to_end'].get('p99_ms')} ms")
    log(f"load: database: jobs {acc['jobs_by_state']}, requeued {acc['jobs_requeued_by_reconciler']}, "
        f"unacknowledged {acc['jobs_of_unacknowledged_requests']}; written {args.out.relative_to(REPO_ROOT) if args.out.is_relative_to(REPO_ROOT) else args.out}")
    print(summary_line(acc), flush=True)
    return 0 if acc["lost"] == 0 and acc["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
