"""`cxr-report automation status | pause --reason ... | resume --reason ...` against the database of
the environment (DATABASE_URL). Recorded with the operating-system user as who, and in the audit trail."""

from __future__ import annotations

import argparse
import getpass
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("automation", help="the automation switch: status, pause (co-sign mode), resume")
    cmds = p.add_subparsers(dest="automation_command", required=True)
    status = cmds.add_parser("status", help="the current mode, why and since when")
    status.set_defaults(func=_status)
    for name, help_ in (("pause", "co-sign mode: every report waits for a radiologist, nothing is sent by itself"),
                        ("resume", "automatic mode; held SR store-backs are sent")):
        c = cmds.add_parser(name, help=help_)
        c.add_argument("--reason", required=True)
        c.set_defaults(func=_switch, action=name)


def _engine():  # noqa: ANN202
    from libs.core.config import get_settings
    from libs.storage.db import get_engine, upgrade_schema

    engine = get_engine(get_settings().sqlalchemy_url)
    upgrade_schema(engine)
    return engine


def _show(state, **extra) -> None:  # noqa: ANN001, ANN003
    print(json.dumps({"mode": state.mode, "reason": state.reason,
                      "since": state.since.isoformat() if state.since else None, "actor": state.actor,
                      "source": state.source, **extra}, indent=2))


def _status(args: argparse.Namespace) -> int:
    from libs.automation import switch

    _show(switch.current(_engine()))
    return 0


def _switch(args: argparse.Namespace) -> int:
    from libs.audit.trail import AuditRecord, append
    from libs.automation import switch

    engine = _engine()
    actor = f"cli:{getpass.getuser()}"
    if args.action == "pause":
        state, changed = switch.pause(engine, args.reason, actor, "cli")
        extra = {"changed": changed}
    else:
        state, changed, released = switch.resume(engine, args.reason, actor, "cli")
        # The reconciler sends the released store-backs' QA messages once they are stale.
        extra = {"changed": changed, "released": len(released)}
    append(engine, AuditRecord(agent_type="cli", agent_id=getpass.getuser(), action="U", outcome="0",
                               entity_type="Automation", entity_id=None, operation=f"automation {args.action}",
                               detail=f"{state.mode}{'' if changed else ' (unchanged)'}"))
    _show(state, **extra)
    return 0
