"""An append-only, hash-chained audit trail in SQL (table audit_events, migration 0003).

Each row's `hash` is SHA-256 over the previous row's hash and the row's own fields in a canonical
form, so changing, removing or reordering any row breaks every hash after it; `verify` walks the
chain. The database refuses UPDATE and DELETE on the table (triggers), and appends are serialised
through the single `audit_head` row so concurrent writers (gateway replicas, workers, the CLI)
never fork the chain.

What is recorded follows IHE Basic Audit Log Patterns: the agent (who), the entity (what: a
resource type and id, never patient identifiers: UIDs and our own ids only), the action
(C/R/U/D/E), the outcome (0 success, 4 minor failure: the request was refused, 8 serious failure:
the server failed), the time, the network address and the operation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from libs.storage.db import session_scope
from libs.storage.models import AuditEventRow, AuditHeadRow, utcnow

GENESIS = "0" * 64
ACTIONS = {"C", "R", "U", "D", "E"}
OUTCOMES = {"0", "4", "8", "12"}


@dataclass(frozen=True)
class AuditRecord:
    agent_type: str
    agent_id: str
    action: str
    outcome: str
    entity_type: str
    entity_id: str | None
    operation: str
    source_address: str | None = None
    http_status: int | None = None
    detail: str | None = None


def outcome_for_status(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


def _stamp(at: dt.datetime) -> str:
    aware = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    return aware.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(prev_hash: str, seq: int, at: dt.datetime, r: AuditRecord | AuditEventRow) -> str:
    fields = {
        "seq": seq, "at": _stamp(at), "agent_type": r.agent_type, "agent_id": r.agent_id, "action": r.action,
        "outcome": r.outcome, "entity_type": r.entity_type, "entity_id": r.entity_id, "operation": r.operation,
        "source_address": r.source_address, "http_status": r.http_status, "detail": r.detail,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def append_in(session: Session, record: AuditRecord) -> int:
    """Appends inside the caller's transaction (so the action and its record commit together)."""
    if record.action not in ACTIONS or record.outcome not in OUTCOMES:
        raise ValueError(f"bad audit action/outcome {record.action!r}/{record.outcome!r}")
    # The UPDATE takes the head row's lock first: whoever holds it appends next.
    seq, prev = session.execute(
        update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=AuditHeadRow.seq + 1)
        .returning(AuditHeadRow.seq, AuditHeadRow.hash)
    ).one()
    at = utcnow()
    digest = row_hash(prev, seq, at, record)
    session.add(AuditEventRow(seq=seq, at=at, prev_hash=prev, hash=digest, **_fields(record)))
    session.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(hash=digest))
    session.flush()
    return seq


def _fields(r: AuditRecord) -> dict:
    return {
        "agent_type": r.agent_type, "agent_id": r.agent_id[:200], "action": r.action, "outcome": r.outcome,
        "entity_type": r.entity_type[:64], "entity_id": r.entity_id[:200] if r.entity_id else None,
        "operation": r.operation[:64], "source_address": r.source_address[:64] if r.source_address else None,
        "http_status": r.http_status, "detail": r.detail[:2000] if r.detail else None,
    }


def append(engine: Engine, record: AuditRecord) -> int:
    with session_scope(engine) as session:
        return append_in(session, record)


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    ok: bool
    problem: str | None = None
    first_bad_seq: int | None = None


def verify(engine: Engine, batch: int = 5000) -> VerifyResult:
    """Recomputes the chain from the first row; stops at the first row that does not match."""
    prev, expected_seq, count = GENESIS, 1, 0
    with session_scope(engine) as session:
        last = 0
        while True:
            rows = session.scalars(
                select(AuditEventRow).where(AuditEventRow.seq > last).order_by(AuditEventRow.seq).limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                if row.seq != expected_seq:
                    return VerifyResult(count, False, f"row {expected_seq} is missing (next is {row.seq})", expected_seq)
                if row.prev_hash != prev:
                    return VerifyResult(count, False, f"row {row.seq} does not follow row {row.seq - 1}", row.seq)
                if row_hash(prev, row.seq, row.at, row) != row.hash:
                    return VerifyResult(count, False, f"row {row.seq} was changed after it was written", row.seq)
                prev, expected_seq, count = row.hash, row.seq + 1, count + 1
            last = rows[-1].seq
        head_seq, head_hash = session.execute(select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)).one()
    if head_seq != count or head_hash != prev:
        return VerifyResult(count, False, f"the trail ends at row {count} but its head says {head_seq}: "
                                          "rows were removed from the end", count + 1)
    return VerifyResult(count, True)


@dataclass(frozen=True)
class Query:
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive
    agent: str | None = None  # agent_id, or "type:id"
    entity_type: str | None = None
    entity_id: str | None = None
    action: str | None = None
    outcome: str | None = None
    after_seq: int = 0
    limit: int = 50


def search(engine: Engine, q: Query) -> list[AuditEventRow]:
    stmt = select(AuditEventRow).where(AuditEventRow.seq > q.after_seq)
    if q.since is not None:
        stmt = stmt.where(AuditEventRow.at >= q.since)
    if q.until is not None:
        stmt = stmt.where(AuditEventRow.at < q.until)
    if q.agent:
        kind, sep, ident = q.agent.partition(":")
        if sep:
            stmt = stmt.where(AuditEventRow.agent_type == kind, AuditEventRow.agent_id == ident)
        else:
            stmt = stmt.where(AuditEventRow.agent_id == q.agent)
    if q.entity_type:
        stmt = stmt.where(AuditEventRow.entity_type == q.entity_type)
    if q.entity_id:
        stmt = stmt.where(AuditEventRow.entity_id == q.entity_id)
    if q.action:
        stmt = stmt.where(AuditEventRow.action == q.action)
    if q.outcome:
        stmt = stmt.where(AuditEventRow.outcome == q.outcome)
    with session_scope(engine) as session:
        rows = session.scalars(stmt.order_by(AuditEventRow.seq).limit(q.limit)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def get(engine: Engine, seq: int) -> AuditEventRow | None:
    with session_scope(engine) as session:
        row = session.get(AuditEventRow, seq)
        if row is not None:
            session.expunge(row)
        return row
