"""`cxr-report apikey create|list|revoke` and `cxr-report audit verify`.

Key management is itself audited: each create and revoke is a row in the audit trail with the
operating-system user who ran the command as the agent.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from libs.auth.scopes import ROLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apikey", help="API keys for PACS and devices that cannot do OAuth")
    keys = p.add_subparsers(dest="apikey_command", required=True)
    create = keys.add_parser("create", help="create a key; it is printed once and never shown again")
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'orthanc main PACS'")
    create.add_argument("--role", required=True, choices=[*ROLES, "custom"],
                        help="pacs: store studies; ehr: request and read reports; radiologist; ops; "
                             "custom: exactly the --scope values")
    create.add_argument("--scope", action="append", default=[], help="a SMART scope (role custom only)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_cmd_create)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id (the part after cxr_)")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_cmd_revoke)

    a = sub.add_parser("audit", help="the audit trail; the bias audit of the model")
    audit = a.add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check the hash chain of the whole trail (exit 1 when broken)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_cmd_verify)
    from libs.lifecycle.cli import register_audit

    register_audit(audit)  # cxr-report audit bias


def _engine():  # noqa: ANN202
    from libs.core.config import get_settings
    from libs.storage.db import get_engine, upgrade_schema

    engine = get_engine(get_settings().sqlalchemy_url)
    upgrade_schema(engine)
    return engine


def _audit_cli(engine, action: str, key_id: str, operation: str, detail: str) -> None:  # noqa: ANN001
    from libs.audit.trail import AuditRecord, append

    append(engine, AuditRecord(agent_type="cli", agent_id=getpass.getuser(), action=action, outcome="0",
                               entity_type="ApiKey", entity_id=key_id, operation=operation, detail=detail))


def _cmd_create(args: argparse.Namespace) -> int:
    from libs.auth import apikeys
    from libs.core.errors import InputRejected

    engine = _engine()
    try:
        info, key = apikeys.create(engine, args.name, args.role, args.scope or None)
    except ValueError as exc:
        raise InputRejected(str(exc)) from None
    _audit_cli(engine, "C", info.id, "apikey create", f"role {info.role}: {' '.join(info.scopes)}")
    if args.json:
        print(json.dumps({"id": info.id, "name": info.name, "role": info.role, "scopes": info.scopes, "key": key}))
    else:
        print(key)
        print(f"API key {info.id} ({info.role}: {' '.join(info.scopes)}) created; store it now, it is not shown "
              "again. Send it as the X-API-Key header.", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from libs.auth import apikeys

    keys = apikeys.list_keys(_engine())
    rows = [{"id": k.id, "name": k.name, "role": k.role, "scopes": k.scopes,
             "created_at": k.created_at.isoformat(), "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
             "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':<13} {'role':<12} {'state':<8} {'last used':<26} name")
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        print(f"{r['id']:<13} {r['role']:<12} {state:<8} {r['last_used_at'] or 'never':<26} {r['name']}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from libs.auth import apikeys
    from libs.core.errors import NotFound

    engine = _engine()
    try:
        info = apikeys.revoke(engine, args.key_id)
    except KeyError:
        raise NotFound(f"no API key {args.key_id}") from None
    _audit_cli(engine, "U", info.id, "apikey revoke", "revoked")
    print(f"API key {info.id} ({info.name}) revoked")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from libs.audit.trail import verify

    result = verify(_engine())
    if args.json:
        print(json.dumps({"rows": result.rows, "ok": result.ok, "problem": result.problem,
                          "first_bad_seq": result.first_bad_seq}))
    elif result.ok:
        print(f"audit trail intact: {result.rows} rows, hash chain verified")
    else:
        print(f"audit trail BROKEN after {result.rows} good rows: {result.problem}", file=sys.stderr)
    return 0 if result.ok else 1
