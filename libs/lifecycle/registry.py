"""The model registry: bundles registered with their manifest, metrics, validation report and hash, and
the lifecycle candidate → shadow → canary → production → retired.

Why not MLflow's registry: its stages (None / Staging / Production / Archived) are deprecated in favour of
free-form aliases and map onto neither shadow nor canary; it would add a server or a second store beside the
database every service already reads (and a large dependency tree to every image); and the workers must
see a promotion in the same transaction that records who made it and why. So the registry is two tables in
the platform's own database (model_versions, model_events) and an immutable copy of each bundle under
DATA_DIR/registry/<name>/<version>, checked against its SHA-256 before a worker loads it.

Rules (each refused with the reason, nothing changed):
- candidate → shadow: the validation gate passed (libs/lifecycle/gate.py); one trial (shadow or canary) at a time;
- shadow → canary: at least `shadow_min_hours` in shadow;
- canary → production: the canary comparison decided "promote" (libs/lifecycle/canary.py);
- candidate → production: only while nothing is in production (the first model), gate passed;
- the old production is retired when a new one takes over; any model but production can be retired;
- rollback: a canary goes back to candidate (traffic to production); a production younger than
  `rollback_window_hours` is retired and the one it replaced is production again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from libs.bundle.manifest import load_manifest
from libs.core.config import Settings
from libs.storage.crud import aware
from libs.storage.db import session_scope
from libs.storage.models import ModelEventRow, ModelVersionRow

CANDIDATE, SHADOW, CANARY, PRODUCTION, RETIRED = "candidate", "shadow", "canary", "production", "retired"
STATES = (CANDIDATE, SHADOW, CANARY, PRODUCTION, RETIRED)
TRIAL = (SHADOW, CANARY)


class RegistryError(ValueError):
    """A registry request that breaks a rule: the message says which."""


class UnknownModel(RegistryError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    id: str
    name: str
    version: str
    state: str
    path: Path
    sha256: str
    manifest: dict[str, Any]
    validation: dict[str, Any] | None
    comparison: dict[str, Any] | None
    registered_at: dt.datetime
    state_since: dt.datetime

    @property
    def gate_passed(self) -> bool:
        return bool(self.validation and self.validation.get("passed"))

    @property
    def input_size(self) -> int:
        return int(self.manifest["input"]["size"])


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    model_id: str
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    source: str
    reason: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _out(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(id=row.id, name=row.name, version=row.version, state=row.state, path=Path(row.path),
                        sha256=row.sha256, manifest=row.manifest, validation=row.validation,
                        comparison=row.comparison, registered_at=aware(row.registered_at),
                        state_since=aware(row.state_since))


def bundle_sha256(folder: Path) -> str:
    """One hash over every file of a bundle folder (relative path and content), in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _bundle_files(folder: Path, manifest) -> list[Path]:  # noqa: ANN001 - Manifest
    """What a bundle consists of: its manifest and the files it names (model card and eval folder too)."""
    files = [folder / "manifest.json"]
    for name in manifest.files.model_dump(exclude_none=True).values():
        named = folder / name
        files += sorted(p for p in named.rglob("*") if p.is_file()) if named.is_dir() else [named]
    files += [p for p in (folder / "MODEL_CARD.md", folder / "drift_reference.npz") if p.is_file()]
    files += [p for p in (folder / "eval").glob("*") if p.is_file()] if (folder / "eval").is_dir() else []
    missing = [str(f.relative_to(folder)) for f in files if not f.is_file()]
    if missing:
        raise RegistryError(f"the bundle lacks {', '.join(missing)}")
    return files


def _event(session, model_id: str, action: str, from_state: str | None, to_state: str | None, actor: str,  # noqa: ANN001
           source: str, reason: str) -> None:
    session.add(ModelEventRow(at=_now(), model_id=model_id, action=action, from_state=from_state, to_state=to_state,
                              actor=actor[:200], source=source, reason=reason))


def register(engine: Engine, settings: Settings, bundle: Path, actor: str, source: str = "cli",
             reason: str = "registered") -> ModelVersion:
    """Copies the bundle into the registry (immutable from then on) and records it as a candidate."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle)  # BundleUnavailable with the reason for a folder that is no bundle
    model_id = f"{manifest.name}:{manifest.version}"
    with session_scope(engine) as session:
        if session.get(ModelVersionRow, model_id) is not None:
            raise RegistryError(f"{model_id} is already registered: a changed bundle needs a new version")
    dest = settings.data_dir / "registry" / manifest.name / manifest.version
    if dest.exists():
        shutil.rmtree(dest)  # left by a registration that failed before its row was written
    dest.mkdir(parents=True)
    try:
        for src in _bundle_files(bundle, manifest):
            target = dest / src.relative_to(bundle)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        digest = bundle_sha256(dest)
        with session_scope(engine) as session:
            now = _now()
            row = ModelVersionRow(id=model_id, name=manifest.name, version=manifest.version, state=CANDIDATE,
                                  path=str(dest), sha256=digest,
                                  manifest=json.loads(manifest.model_dump_json(exclude_none=True)),
                                  registered_at=now, registered_by=actor[:200], state_since=now)
            session.add(row)
            session.flush()
            _event(session, model_id, "register", None, CANDIDATE, actor, source, reason)
            return _out(row)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def get(engine: Engine, model_id: str) -> ModelVersion:
    with session_scope(engine) as session:
        row = session.get(ModelVersionRow, model_id)
        if row is None:
            raise UnknownModel(f"no registered model {model_id!r} (cxr-report model list)")
        return _out(row)


def all_models(engine: Engine) -> list[ModelVersion]:
    with session_scope(engine) as session:
        return [_out(r) for r in session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.registered_at))]


def in_state(engine: Engine, state: str) -> ModelVersion | None:
    with session_scope(engine) as session:
        row = session.scalars(select(ModelVersionRow).where(ModelVersionRow.state == state)
                              .order_by(ModelVersionRow.state_since.desc()).limit(1)).first()
        return _out(row) if row is not None else None


def events(engine: Engine, model_id: str | None = None) -> list[Event]:
    with session_scope(engine) as session:
        query = select(ModelEventRow).order_by(ModelEventRow.id)
        if model_id is not None:
            query = query.where(ModelEventRow.model_id == model_id)
        return [Event(at=aware(e.at), model_id=e.model_id, action=e.action, from_state=e.from_state,
                      to_state=e.to_state, actor=e.actor, source=e.source, reason=e.reason)
                for e in session.scalars(query)]


def last_rollback(engine: Engine) -> dt.datetime | None:
    """When the model was last rolled back (None: never)."""
    from sqlalchemy import func

    with session_scope(engine) as session:
        at = session.scalar(select(func.max(ModelEventRow.at)).where(ModelEventRow.action == "rollback"))
    return aware(at) if at is not None else None


def store_validation(engine: Engine, model_id: str, report: dict[str, Any], actor: str, source: str = "cli") -> None:
    with session_scope(engine) as session:
        row = _row(session, model_id)
        row.validation = report
        verdict = "passed" if report.get("passed") else "failed: " + "; ".join(report.get("failures", []))
        _event(session, model_id, "validate", row.state, row.state, actor, source, f"validation gate {verdict}")


def store_comparison(engine: Engine, model_id: str, report: dict[str, Any], actor: str, source: str = "cli") -> None:
    with session_scope(engine) as session:
        row = _row(session, model_id)
        row.comparison = report
        _event(session, model_id, "compare", row.state, row.state, actor, source,
               f"canary comparison: {report.get('decision')} ({report.get('why', '')})")


def _row(session, model_id: str) -> ModelVersionRow:  # noqa: ANN001
    row = session.get(ModelVersionRow, model_id)
    if row is None:
        raise UnknownModel(f"no registered model {model_id!r} (cxr-report model list)")
    return row


def _set(session, row: ModelVersionRow, state: str, actor: str, source: str, reason: str,  # noqa: ANN001
         action: str = "promote") -> None:
    _event(session, row.id, action, row.state, state, actor, source, reason)
    row.state, row.state_since = state, _now()


def promote(engine: Engine, settings: Settings, model_id: str, to_state: str, actor: str, reason: str,
            source: str = "cli") -> ModelVersion:
    """Moves a model one step along the lifecycle; RegistryError says which rule refused it."""
    reason = " ".join(reason.split())
    if not reason:
        raise RegistryError("a reason is required: it goes into the model's history")
    if to_state not in (SHADOW, CANARY, PRODUCTION):
        raise RegistryError(f"promote to shadow, canary or production, not {to_state!r} (retire: cxr-report model retire)")
    with session_scope(engine) as session:
        row = _row(session, model_id)
        model = _out(row)
        current = session.scalars(select(ModelVersionRow).where(ModelVersionRow.state == PRODUCTION)).first()
        trial = session.scalars(select(ModelVersionRow).where(ModelVersionRow.state.in_(TRIAL),
                                                               ModelVersionRow.id != model_id)).first()
        _check(settings, model, to_state, current, trial)
        if to_state == PRODUCTION and current is not None:
            _set(session, current, RETIRED, actor, source, f"replaced by {model_id}: {reason}")
        if to_state == CANARY:
            row.comparison = None  # a comparison from an earlier canary (rolled back since) decides nothing
        _set(session, row, to_state, actor, source, reason)
        session.flush()
        return _out(row)


def _check(settings: Settings, model: ModelVersion, to_state: str, current: ModelVersionRow | None,
           trial: ModelVersionRow | None) -> None:
    if model.state == to_state:
        raise RegistryError(f"{model.id} is already {to_state}")
    if not model.gate_passed:
        raise RegistryError(f"{model.id} has not passed the validation gate (cxr-report model validate {model.id})")
    if to_state in TRIAL and trial is not None:
        raise RegistryError(f"{trial.id} is in {trial.state}: one trial at a time (retire or promote it first)")
    if to_state in TRIAL:
        size, serving = _production_size(settings, current)
        if size is not None and size != model.input_size:
            raise RegistryError(f"{model.id} reads {model.input_size}-pixel images and production {serving} "
                                f"{size}: a trial shares production's preprocessing")
    if to_state == SHADOW and model.state != CANDIDATE:
        raise RegistryError(f"only a candidate goes to shadow; {model.id} is {model.state}")
    if to_state == CANARY:
        if model.state != SHADOW:
            raise RegistryError(f"only a model in shadow goes to canary; {model.id} is {model.state}")
        if current is None:
            raise RegistryError("a canary needs a production model to compare with")
        hours = (_now() - model.state_since).total_seconds() / 3600
        if hours < settings.shadow_min_hours:
            raise RegistryError(f"{model.id} has been in shadow {hours:.1f} h of the {settings.shadow_min_hours:g} h required")
    if to_state == PRODUCTION:
        if current is None and model.state in (CANDIDATE, SHADOW):
            return  # the first production model: the gate is the only evidence there can be
        if model.state != CANARY:
            raise RegistryError(f"only a canary goes to production while {current.id if current else 'another'} serves; "
                                f"{model.id} is {model.state}")
        decision = (model.comparison or {}).get("decision")
        if decision != "promote":
            raise RegistryError(f"the canary comparison of {model.id} says {decision or 'nothing yet'!r}, not 'promote' "
                                f"(cxr-report model compare {model.id})")


def _production_size(settings: Settings, current: ModelVersionRow | None) -> tuple[int | None, str]:
    """(input size, name) of what serves now: the registered production model, else the configured bundle."""
    if current is not None:
        return int(current.manifest["input"]["size"]), current.id
    from libs.core.errors import BundleUnavailable

    try:
        return load_manifest(settings.bundle_path).input.size, f"(the configured bundle {settings.bundle_path})"
    except BundleUnavailable:
        return None, ""


def retire(engine: Engine, model_id: str, actor: str, reason: str, source: str = "cli") -> ModelVersion:
    reason = " ".join(reason.split())
    if not reason:
        raise RegistryError("a reason is required: it goes into the model's history")
    with session_scope(engine) as session:
        row = _row(session, model_id)
        if row.state == PRODUCTION:
            raise RegistryError(f"{model_id} is production: promote another model or roll back instead")
        if row.state == RETIRED:
            raise RegistryError(f"{model_id} is already retired")
        _set(session, row, RETIRED, actor, source, reason, action="retire")
        session.flush()
        return _out(row)


def rollback(engine: Engine, settings: Settings, actor: str, reason: str, source: str = "cli") -> list[Event]:
    """Traffic back to the previous version: the canary (if any) back to candidate, and a production
    younger than the rollback window replaced by the one it retired. Returns what changed (nothing: [])."""
    reason = " ".join(reason.split()) or "rollback"
    changed: list[Event] = []
    with session_scope(engine) as session:
        canary = session.scalars(select(ModelVersionRow).where(ModelVersionRow.state == CANARY)).first()
        if canary is not None:
            _set(session, canary, CANDIDATE, actor, source, f"rolled back: {reason}", action="rollback")
            changed.append(Event(_now(), canary.id, "rollback", CANARY, CANDIDATE, actor, source, reason))
        current = session.scalars(select(ModelVersionRow).where(ModelVersionRow.state == PRODUCTION)).first()
        if canary is None and current is not None:
            age_h = (_now() - aware(current.state_since)).total_seconds() / 3600
            previous = _replaced_by(session, current.id)
            if age_h <= settings.rollback_window_hours and previous is not None:
                _set(session, current, RETIRED, actor, source, f"rolled back: {reason}", action="rollback")
                _set(session, previous, PRODUCTION, actor, source, f"restored by rollback of {current.id}: {reason}",
                     action="rollback")
                changed += [Event(_now(), current.id, "rollback", PRODUCTION, RETIRED, actor, source, reason),
                            Event(_now(), previous.id, "rollback", RETIRED, PRODUCTION, actor, source, reason)]
    return changed


def _replaced_by(session, model_id: str) -> ModelVersionRow | None:  # noqa: ANN001
    """The production model that `model_id`'s promotion retired."""
    marker = f"replaced by {model_id}:"
    event = session.scalars(select(ModelEventRow).where(ModelEventRow.to_state == RETIRED,
                                                        ModelEventRow.reason.startswith(marker))
                            .order_by(ModelEventRow.id.desc()).limit(1)).first()
    return session.get(ModelVersionRow, event.model_id) if event is not None else None


def verified_path(model: ModelVersion) -> Path:
    """The registry copy, after checking it is byte for byte what was registered."""
    actual = bundle_sha256(model.path)
    if actual != model.sha256:
        raise RegistryError(f"the registry copy of {model.id} at {model.path} has changed since it was registered "
                            f"(sha256 {actual[:12]}… != {model.sha256[:12]}…): re-register it as a new version")
    return model.path
