"""The registry: registration (an immutable, hash-checked copy), the lifecycle's rules, rollback, and
the history of who did what; on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from libs.lifecycle import registry
from libs.lifecycle.routing import CANARY_ARM, PRODUCTION_ARM, Deployment, in_canary, other, read, served
from tests.lifecycle.conftest import passed_gate, two_models


def test_register_copies_and_hashes_the_bundle_and_refuses_a_second_time(engine, lifecycle_settings, make_bundle) -> None:  # noqa: ANN001
    bundle = make_bundle("1.0.0")
    model = registry.register(engine, lifecycle_settings, bundle, "cli:test")
    assert model.id == "test-random:1.0.0" or model.id.endswith(":1.0.0")
    assert model.state == registry.CANDIDATE and model.path != bundle and (model.path / "manifest.json").is_file()
    assert registry.verified_path(model) == model.path
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register(engine, lifecycle_settings, bundle, "cli:test")
    # The copy is immutable: a changed byte is found before any worker loads it.
    (model.path / "manifest.json").write_text((model.path / "manifest.json").read_text() + " ")
    with pytest.raises(registry.RegistryError, match="has changed since it was registered"):
        registry.verified_path(registry.get(engine, model.id))
    with pytest.raises(Exception, match="manifest"):
        registry.register(engine, lifecycle_settings, bundle.parent, "cli:test")  # not a bundle folder


def test_the_lifecycle_rules(engine, lifecycle_settings, make_bundle) -> None:  # noqa: ANN001
    s = lifecycle_settings
    a = registry.register(engine, s, make_bundle("1.0.0"), "cli:test").id
    b = registry.register(engine, s, make_bundle("2.0.0", seed=1), "cli:test").id
    with pytest.raises(registry.RegistryError, match="validation gate"):
        registry.promote(engine, s, a, "production", "cli:test", "first")
    with pytest.raises(registry.RegistryError, match="reason is required"):
        registry.promote(engine, s, a, "production", "cli:test", "  ")
    passed_gate(engine, a)
    passed_gate(engine, b)
    assert registry.promote(engine, s, a, "production", "cli:test", "the first model").state == registry.PRODUCTION
    with pytest.raises(registry.RegistryError, match="only a canary goes to production"):
        registry.promote(engine, s, b, "production", "cli:test", "skip the trial")
    with pytest.raises(registry.RegistryError, match="only a model in shadow goes to canary"):
        registry.promote(engine, s, b, "canary", "cli:test", "skip the shadow")
    registry.promote(engine, s, b, "shadow", "cli:test", "48 h beside production")
    c = registry.register(engine, s, make_bundle("3.0.0", seed=2), "cli:test").id
    passed_gate(engine, c)
    with pytest.raises(registry.RegistryError, match="one trial at a time"):
        registry.promote(engine, s, c, "shadow", "cli:test", "a second trial")
    strict = s.model_copy(update={"shadow_min_hours": 48})
    with pytest.raises(registry.RegistryError, match="in shadow 0.0 h of the 48 h"):
        registry.promote(engine, strict, b, "canary", "cli:test", "too early")
    registry.promote(engine, s, b, "canary", "cli:test", "shadow looked fine")
    with pytest.raises(registry.RegistryError, match="says 'nothing yet'"):
        registry.promote(engine, s, b, "production", "cli:test", "no comparison")
    registry.store_comparison(engine, b, {"decision": "hold", "why": "too few"}, "cli:test")
    with pytest.raises(registry.RegistryError, match="says 'hold'"):
        registry.promote(engine, s, b, "production", "cli:test", "held")
    registry.store_comparison(engine, b, {"decision": "promote", "why": "better"}, "cli:test")
    registry.promote(engine, s, b, "production", "cli:test", "canary won")
    assert registry.get(engine, a).state == registry.RETIRED and registry.get(engine, b).state == registry.PRODUCTION
    with pytest.raises(registry.RegistryError, match="is production"):
        registry.retire(engine, b, "cli:test", "no")
    history = [(e.model_id, e.action, e.to_state) for e in registry.events(engine)]
    assert (a, "promote", registry.RETIRED) in history and (b, "compare", registry.CANARY) in history
    assert all(e.actor in ("cli:test", "test") and e.reason for e in registry.events(engine))


def test_rollback_turns_a_canary_off_then_undoes_a_fresh_promotion(engine, lifecycle_settings, make_bundle) -> None:  # noqa: ANN001
    s = lifecycle_settings
    assert registry.rollback(engine, s, "t", "nothing yet") == []
    a, b = two_models(engine, s, make_bundle, trial="canary")
    (change,) = registry.rollback(engine, s, "alertmanager", "alert CriticalFindingSensitivityLow", "alertmanager")
    assert (change.model_id, change.from_state, change.to_state) == (b, registry.CANARY, registry.CANDIDATE)
    assert registry.in_state(engine, registry.PRODUCTION).id == a
    # Promoted (after a new trial) and rolled back within the window: the previous production returns.
    registry.promote(engine, s, b, "shadow", "t", "again")
    registry.promote(engine, s, b, "canary", "t", "again")
    registry.store_comparison(engine, b, {"decision": "promote", "why": "better"}, "t")
    registry.promote(engine, s, b, "production", "t", "canary won")
    outside = s.model_copy(update={"rollback_window_hours": 0})
    assert registry.rollback(engine, outside, "t", "too late") == []
    changes = registry.rollback(engine, s, "t", "alert after promotion")
    assert registry.get(engine, b).comparison is not None  # the comparison stays on the record
    assert [(e.model_id, e.to_state) for e in changes] == [(b, registry.RETIRED), (a, registry.PRODUCTION)]
    assert registry.in_state(engine, registry.PRODUCTION).id == a


def test_a_canary_after_a_rollback_needs_a_new_comparison(engine, lifecycle_settings, make_bundle) -> None:  # noqa: ANN001
    s = lifecycle_settings
    _, b = two_models(engine, s, make_bundle, trial="canary")
    registry.store_comparison(engine, b, {"decision": "promote", "why": "better"}, "t")
    registry.rollback(engine, s, "alertmanager", "alert", "alertmanager")  # before anyone promoted it
    registry.promote(engine, s, b, "shadow", "t", "fixed")
    registry.promote(engine, s, b, "canary", "t", "again")
    with pytest.raises(registry.RegistryError, match="says 'nothing yet'"):
        registry.promote(engine, s, b, "production", "t", "the old comparison")


def test_a_trial_must_read_the_same_image_size_as_production(engine, lifecycle_settings, make_bundle) -> None:  # noqa: ANN001
    s = lifecycle_settings
    a = registry.register(engine, s, make_bundle("1.0.0"), "t").id
    b = registry.register(engine, s, make_bundle("2.0.0", size=128), "t").id
    for m in (a, b):
        passed_gate(engine, m)
    # Nothing registered serves yet: the configured bundle's size counts.
    configured = s.model_copy(update={"bundle_path": make_bundle("0.9.0", size=96)})
    with pytest.raises(registry.RegistryError, match="reads 128-pixel images and production .the configured bundle"):
        registry.promote(engine, configured, b, "shadow", "t", "different size")
    registry.promote(engine, s, a, "production", "t", "first")
    with pytest.raises(registry.RegistryError, match="reads 128-pixel images and production"):
        registry.promote(engine, s, b, "shadow", "t", "different size")


def test_canary_arms_are_a_deterministic_share_of_studies() -> None:
    from pydicom.uid import generate_uid

    uids = [generate_uid() for _ in range(5000)]
    share = sum(in_canary(u, 0.10) for u in uids) / len(uids)
    assert 0.08 < share < 0.12
    assert [in_canary(u, 0.10) for u in uids[:50]] == [in_canary(u, 0.10) for u in uids[:50]]  # the same arm again
    assert not any(in_canary(u, 1e-9) for u in uids[:500])


def test_routing_serves_the_canary_share_and_runs_the_other_model(engine, lifecycle_settings, make_bundle) -> None:  # noqa: ANN001
    s = lifecycle_settings.model_copy(update={"canary_share": 0.5})
    assert read(engine, s) == Deployment(production=None, trial=None, canary_share=0.5)
    a, b = two_models(engine, s, make_bundle, trial="shadow")
    shadow = read(engine, s)
    assert served(shadow, "1.2.3") == (shadow.production, PRODUCTION_ARM) and other(shadow, PRODUCTION_ARM).id == b
    registry.promote(engine, s, b, "canary", "t", "trial")
    canary = read(engine, s)
    arms = {served(canary, f"1.2.{i}")[1] for i in range(40)}
    assert arms == {PRODUCTION_ARM, CANARY_ARM}
    uid = next(f"1.2.{i}" for i in range(40) if served(canary, f"1.2.{i}")[1] == CANARY_ARM)
    assert served(canary, uid)[0].id == b and other(canary, CANARY_ARM).id == a
