"""`cxr-report jobs dead-letters [--json]` and `cxr-report jobs redrive JOB_ID... | --all`.

The same listing and re-drive as the ops API (libs/pipeline/redrive.py), against the database and
queue of the environment (DATABASE_URL, REDIS_URL). Each re-drive is recorded in the audit trail with
the operating-system user who ran the command as the agent.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="dead letters: list them, re-drive them")
    jobs = p.add_subparsers(dest="jobs_command", required=True)
    listing = jobs.add_parser("dead-letters", help="jobs whose retries ran out, and SR store-backs out of attempts")
    listing.add_argument("--json", action="store_true", help="one JSON object: total and items")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--offset", type=int, default=0)
    listing.set_defaults(func=_cmd_list)
    redrive = jobs.add_parser("redrive", help="put dead letters back to work")
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("job_ids", nargs="*", default=[], metavar="JOB_ID")
    which.add_argument("--all", action="store_true", help="every dead letter")
    redrive.add_argument("--json", action="store_true")
    redrive.set_defaults(func=_cmd_redrive)


def _context():  # noqa: ANN202 - PipelineContext
    from libs.core.config import get_settings
    from libs.pipeline.context import PipelineContext

    return PipelineContext.from_settings(get_settings())


def _item(letter) -> dict[str, Any]:  # noqa: ANN001 - crud.DeadLetter
    from libs.pipeline.redrive import failed_step

    return {"job_id": letter.job_id, "study_id": letter.study_uid, "kind": letter.kind,
            "failed_step": failed_step(letter).value, "failed_from": letter.failed_from.value,
            "reason": letter.reason, "failed_at": letter.failed_at.isoformat(), "attempts": letter.attempts,
            "requeue_count": letter.requeue_count}


def _cmd_list(args: argparse.Namespace) -> int:
    from libs.pipeline.redrive import dead_letters

    total, letters = dead_letters(_context().engine, max(1, args.limit), max(0, args.offset))
    items = [_item(d) for d in letters]
    if args.json:
        print(json.dumps({"total": total, "items": items}, indent=2))
        return 0
    if not items:
        print("no dead letters")
        return 0
    print(f"{'JOB':36}  {'KIND':9}  {'STEP':10}  {'FAILED AT':19}  {'ATT':>3}  REASON")
    for i in items:
        attempts = "?" if i["attempts"] is None else str(i["attempts"])
        reason = i["reason"].replace("\n", " ")
        print(f"{i['job_id']:36}  {i['kind']:9}  {i['failed_step']:10}  {i['failed_at'][:19]:19}  {attempts:>3}  "
              f"{reason[:100]}")
    if total > len(items):
        print(f"({len(items)} of {total}; --offset {args.offset + len(items)} for more)")
    return 0


def _all_ids(engine) -> list[str]:  # noqa: ANN001
    from libs.pipeline.redrive import dead_letters

    ids: list[str] = []
    while True:  # re-driving removes them from the list, so read it all first
        total, page = dead_letters(engine, 200, len(ids))
        ids += [d.job_id for d in page]
        if not page or len(ids) >= total:
            return ids


def _cmd_redrive(args: argparse.Namespace) -> int:
    from libs.audit.trail import AuditRecord, append
    from libs.pipeline import redrive as dead
    from libs.pipeline.dispatch import InProcessDispatcher
    from libs.pipeline.embedded import drain

    ctx = _context()
    ids = _all_ids(ctx.engine) if args.all else list(args.job_ids)
    if not ids:
        print("no dead letters to re-drive", file=sys.stderr)
        return 0
    results: list[dict[str, Any]] = []
    failures = 0
    celery = ctx.settings.queue_backend.strip().lower() == "celery"

    def one(dispatcher, job_id: str) -> None:  # noqa: ANN001
        nonlocal failures
        try:
            done = dead.redrive(ctx.engine, dispatcher, job_id, "the CLI")
        except (dead.UnknownJob, dead.NotADeadLetter) as exc:
            failures += 1
            results.append({"job_id": job_id, "error": str(exc)})
            return
        append(ctx.engine, AuditRecord(agent_type="cli", agent_id=getpass.getuser(), action="U", outcome="0",
                                       entity_type="Job", entity_id=job_id, operation="jobs redrive",
                                       detail=f"{done.kind}: back to {done.state.value}, {done.step.value} message"))
        results.append({"job_id": job_id, "kind": done.kind, "status": done.state.value, "step": done.step.value,
                         "queued": done.queued})

    if celery:
        with dead.celery_dispatcher(ctx.settings) as dispatcher:
            for job_id in ids:
                one(dispatcher, job_id)
    else:  # the in-process pipeline: run each re-driven job to its end here
        for job_id in ids:
            local = InProcessDispatcher()
            one(local, job_id)
            try:
                drain(ctx, local)
            except Exception:  # noqa: BLE001, S110 - the job holds the reason
                pass
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['job_id']}: {r['error']}", file=sys.stderr)
            else:
                note = "" if r["queued"] else " (queue unreachable: the reconciler will send it)"
                print(f"{r['job_id']}: re-driven ({r['kind']}), back in {r['status']}, {r['step']} message sent{note}")
    return 1 if failures else 0
