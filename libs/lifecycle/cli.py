"""`cxr-report model list | register | validate | promote | compare | rollback | retire | history | drift`
and `cxr-report audit bias`, against the database of the environment (DATABASE_URL). Recorded with the
operating-system user as who (docs/lifecycle.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="the model registry: register, validate, shadow, canary, promote, roll back")
    cmds = p.add_subparsers(dest="model_command", required=True)
    cmds.add_parser("list", help="registered models and their states").set_defaults(func=_list)
    c = cmds.add_parser("register", help="copy a bundle into the registry as a candidate")
    c.add_argument("bundle", type=Path)
    c.add_argument("--reason", default="registered")
    c.set_defaults(func=_register)
    c = cmds.add_parser("validate", help="run the validation gate on held-out studies and store its report")
    c.add_argument("model", help="<name>:<version>")
    c.add_argument("--data", required=True, help="a labels.csv (or its folder), or kermany-val")
    c.add_argument("--limit", type=int, default=None, help="a random sample of this many studies (seeded)")
    c.set_defaults(func=_validate)
    c = cmds.add_parser("promote", help="one step along candidate → shadow → canary → production")
    c.add_argument("model")
    c.add_argument("--to", required=True, choices=["shadow", "canary", "production"])
    c.add_argument("--reason", required=True)
    c.set_defaults(func=_promote)
    c = cmds.add_parser("compare", help="the canary comparison on radiologist feedback, with its decision (stored)")
    c.add_argument("model")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_compare)
    c = cmds.add_parser("rollback", help="traffic back to the previous version (canary off, or a fresh promotion undone)")
    c.add_argument("--reason", required=True)
    c.set_defaults(func=_rollback)
    c = cmds.add_parser("retire", help="take a model out of the lifecycle")
    c.add_argument("model")
    c.add_argument("--reason", required=True)
    c.set_defaults(func=_retire)
    c = cmds.add_parser("history", help="every lifecycle event (of one model)")
    c.add_argument("model", nargs="?")
    c.set_defaults(func=_history)
    c = cmds.add_parser("drift", help="check the production model's recent studies for drift now (stored; on /metrics)")
    c.add_argument("--model", default=None, help="another registered model than production")
    c.set_defaults(func=_drift)


def register_audit(audit_cmds: argparse._SubParsersAction) -> None:
    c = audit_cmds.add_parser("bias", help="per-subgroup sensitivity, specificity, hallucination, equalised odds")
    c.add_argument("--data", default=None, help="a labelled held-out set (else radiologist feedback)")
    c.add_argument("--model", default=None, help="with --data: the registered model to run (default production)")
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--window-days", type=float, default=None, help="feedback window (default CXR_FEEDBACK_WINDOW_DAYS)")
    c.add_argument("--out", type=Path, default=None, help="write <out>.md, <out>.json and <out>.png")
    c.set_defaults(func=_bias)


def _ctx():  # noqa: ANN202
    from libs.core.config import get_settings
    from libs.storage.db import get_engine, upgrade_schema

    settings = get_settings()
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    return engine, settings


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _fail(message: str) -> int:
    print(f"cxr-report: {message}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    from libs.lifecycle import registry

    engine, _ = _ctx()
    models = registry.all_models(engine)
    if not models:
        print("no registered model: the configured bundle (CXR_BUNDLE_PATH) serves")
    for m in models:
        gate = "gate passed" if m.gate_passed else ("gate FAILED" if m.validation else "not validated")
        decision = (m.comparison or {}).get("decision")
        print(f"{m.id:40s} {m.state:10s} since {m.state_since:%Y-%m-%d %H:%M}  {gate}"
              + (f"  canary: {decision}" if decision else "") + f"  sha256 {m.sha256[:12]}")
    return 0


def _register(args: argparse.Namespace) -> int:
    from libs.lifecycle import registry

    engine, settings = _ctx()
    try:
        m = registry.register(engine, settings, args.bundle, _actor(), reason=args.reason)
    except registry.RegistryError as exc:
        return _fail(str(exc))
    print(json.dumps({"id": m.id, "state": m.state, "path": str(m.path), "sha256": m.sha256}, indent=2))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from libs.lifecycle import gate, registry
    from libs.lifecycle.heldout import HeldOutError, load_heldout

    engine, settings = _ctx()
    try:
        items = load_heldout(args.data, args.limit)
        source = f"{args.data}" + (f" (random {len(items)})" if args.limit else "")
        report = gate.validate(engine, settings, args.model, items, source, _actor())
    except (registry.RegistryError, HeldOutError) as exc:
        return _fail(str(exc))
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 2


def _promote(args: argparse.Namespace) -> int:
    from libs.lifecycle import registry

    engine, settings = _ctx()
    try:
        m = registry.promote(engine, settings, args.model, args.to, _actor(), args.reason)
    except registry.RegistryError as exc:
        return _fail(str(exc))
    print(f"{m.id} is now {m.state}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from libs.lifecycle import canary, registry

    engine, settings = _ctx()
    try:
        report = canary.compare(engine, settings, args.model)
    except registry.RegistryError as exc:
        return _fail(str(exc))
    registry.store_comparison(engine, args.model, report, _actor())
    print(json.dumps(report, indent=2) if args.json else canary.markdown(report))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from libs.lifecycle import registry

    engine, settings = _ctx()
    changed = registry.rollback(engine, settings, _actor(), args.reason)
    if not changed:
        print("nothing to roll back: no canary, and no production model promoted within "
              f"{settings.rollback_window_hours:g} h that replaced another")
    for e in changed:
        print(f"{e.model_id}: {e.from_state} -> {e.to_state}")
    return 0


def _retire(args: argparse.Namespace) -> int:
    from libs.lifecycle import registry

    engine, _ = _ctx()
    try:
        m = registry.retire(engine, args.model, _actor(), args.reason)
    except registry.RegistryError as exc:
        return _fail(str(exc))
    print(f"{m.id} is now {m.state}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from libs.lifecycle import registry

    engine, _ = _ctx()
    for e in registry.events(engine, args.model):
        print(f"{e.at:%Y-%m-%d %H:%M:%S} {e.model_id:32s} {e.action:9s} {e.from_state or '-':>10s} -> "
              f"{e.to_state or '-':10s} {e.actor} ({e.source}): {e.reason}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from libs.lifecycle import drift, registry

    engine, settings = _ctx()
    model = registry.get(engine, args.model) if args.model else registry.in_state(engine, registry.PRODUCTION)
    if model is None:
        return _fail("no registered production model (drift needs the reference its validation gate wrote)")
    checks = drift.run_checks(engine, settings, model)
    if not checks:
        print(f"{model.id}: no check (no reference yet, or fewer than 20 studies)")
    for c in checks:
        print(f"{c.signal:28s} statistic {c.statistic:10.5f}  p {c.p_value:.4g}  {'ALARM' if c.alarm else 'ok'}  "
              f"({c.samples} studies)")
    return 0


def _bias(args: argparse.Namespace) -> int:
    from libs.lifecycle import bias, registry

    engine, settings = _ctx()
    if args.data:
        from libs.bundle.runner import BundleRunner
        from libs.lifecycle.gate import run_model
        from libs.lifecycle.heldout import load_heldout

        model = registry.get(engine, args.model) if args.model else registry.in_state(engine, registry.PRODUCTION)
        path = registry.verified_path(model) if model is not None else settings.bundle_path
        items = load_heldout(args.data, args.limit)
        outputs, _, reports = run_model(BundleRunner(path), items)
        result = bias.audit(bias.from_heldout(items, outputs, reports), settings,
                            f"{args.data} with {model.id if model else path.name}")
    else:
        days = args.window_days or settings.feedback_window_days
        result = bias.audit(bias.from_feedback(engine, days), settings, f"radiologist feedback, last {days:g} days")
    text = bias.markdown(result)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(text, encoding="utf-8")
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        try:
            bias.plot(result, Path(f"{args.out}.png"))
        except ImportError:
            print("no plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    return 3 if result["flagged"] else 0
