"""Drift without labels on real images: the reference bundle's embeddings of Kermany validation films
(half as the reference, the other half as served studies), real shifts made from them (exposure, blur)
and from the adult chest CR of pydicom-data; the false-alarm rate on same-distribution windows; metadata
and label drift; and the checks stored and exported on /metrics."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import generate_latest

from libs.bundle.runner import BundleRunner
from libs.core.config import REPO_ROOT
from libs.lifecycle import drift
from libs.lifecycle.heldout import load_heldout, load_images

WINDOW = 100
ALPHA = 0.01


@pytest.fixture(scope="module")
def kermany():  # noqa: ANN201
    """(runner, reference items, reference outputs, reference embeddings, served-half images, served items)."""
    runner = BundleRunner(REPO_ROOT / "models" / "reference")
    items = load_heldout("kermany-val")
    order = np.random.default_rng(1).permutation(len(items))
    ref_items = [items[i] for i in order[:400]]
    served_items = [items[i] for i in order[400:]]
    ref_images = load_images(ref_items, runner.image_size)
    outputs, embeddings = runner.predict_and_embed(ref_images, generate=False)
    return runner, ref_items, outputs, embeddings, load_images(served_items, runner.image_size), served_items


@pytest.fixture(scope="module")
def reference(kermany, tmp_path_factory) -> drift.Reference:  # noqa: ANN001
    _, items, outputs, embeddings, _, _ = kermany
    model = SimpleNamespace(path=tmp_path_factory.mktemp("registry") / "cxr-reference" / "1.3.0")
    path = drift.write_reference(model, items, outputs, embeddings)
    assert path == drift.reference_path(model) and path.is_file()
    return drift.load_reference(path)


def _window(kermany, seed: int, change=None):  # noqa: ANN001, ANN202
    runner, _, _, _, images, items = kermany
    pick = np.random.default_rng(seed).permutation(len(images))[:WINDOW]
    batch = images[pick]
    if change is not None:
        batch = np.clip(change(batch), 0, 1).astype(np.float32)
    outputs, embeddings = runner.predict_and_embed(batch, generate=False)
    probs = drift.probabilities_of(outputs)
    meta = {"view": ["AP"] * len(batch), "manufacturer": [None] * len(batch)}
    return embeddings, probs, meta


def _alarms(checks: list[drift.Check]) -> set[str]:
    return {c.signal for c in checks if c.alarm}


def test_same_distribution_windows_rarely_alarm(kermany, reference) -> None:  # noqa: ANN001
    """20 windows of 100 served studies from the same population: the measured false-alarm rate."""
    alarms = []
    for seed in range(20):
        checks = drift.check(reference, *_window(kermany, seed), alpha=ALPHA, permutations=200)
        alarms.append(_alarms(checks))
        mmd = next(c for c in checks if c.signal == "embedding_mmd")
        assert mmd.samples == WINDOW and mmd.detail["reference"] == 400
    mmd_rate = sum("embedding_mmd" in a for a in alarms) / len(alarms)
    any_rate = sum(bool(a) for a in alarms) / len(alarms)
    print(f"false alarms over 20 same-distribution windows: MMD {mmd_rate:.2f}, any signal {any_rate:.2f}")
    assert mmd_rate <= 0.05 and any_rate <= 0.10


@pytest.mark.parametrize("name, change", [
    ("under-exposed (gamma 2)", lambda x: x ** 2),
    ("over-exposed (gamma 0.5)", lambda x: x ** 0.5),
    ("blurred (sigma 2 px)", lambda x: __import__("scipy.ndimage", fromlist=["x"]).gaussian_filter(x, (0, 2, 2))),
])
def test_acquisition_shifts_alarm(kermany, reference, name: str, change) -> None:  # noqa: ANN001
    checks = drift.check(reference, *_window(kermany, 100, change), alpha=ALPHA, permutations=200)
    mmd = next(c for c in checks if c.signal == "embedding_mmd")
    assert mmd.alarm and mmd.p_value < ALPHA, (name, mmd)


def test_adult_pa_films_from_another_vendor_alarm_on_images_and_metadata(kermany, reference) -> None:  # noqa: ANN001
    """The adult PA chest CR of pydicom-data (Philips), as 40 slightly different acquisitions (crop and
    rotation), among 60 pediatric studies: the image embedding and the view / manufacturer mix move."""
    from pydicom.data import get_testdata_file
    from scipy import ndimage

    from libs.dicom import load_for_model

    runner = kermany[0]
    adult = load_for_model(Path(get_testdata_file("RG1_UNCR.dcm")), size=runner.image_size)[1].array
    rng = np.random.default_rng(0)
    variants = []
    for _ in range(40):
        rotated = ndimage.rotate(adult, rng.uniform(-4, 4), reshape=False, mode="nearest")
        m = int(rng.integers(0, 20))
        crop = rotated[m:runner.image_size - m, m:runner.image_size - m]
        variants.append(ndimage.zoom(crop, runner.image_size / crop.shape[0], order=1)[:runner.image_size, :runner.image_size])
    base_emb, base_probs, _ = _window(kermany, 7)
    adult_out, adult_emb = runner.predict_and_embed(np.clip(np.stack(variants), 0, 1).astype(np.float32), generate=False)
    adult_probs = drift.probabilities_of(adult_out)
    embeddings = np.concatenate([base_emb[:60], adult_emb])
    probabilities = np.concatenate([base_probs[:60], adult_probs])
    meta = {"view": ["AP"] * 60 + ["PA"] * 40, "manufacturer": [None] * 60 + ["Philips Medical Systems"] * 40}
    alarms = _alarms(drift.check(reference, embeddings, probabilities, meta, alpha=ALPHA, permutations=200))
    assert {"embedding_mmd", "meta:view"} <= alarms, alarms


def test_label_drift_is_the_heads_positive_rate(kermany, reference) -> None:  # noqa: ANN001
    runner, _, _, _, images, items = kermany
    normal = [i for i, it in enumerate(items) if it.labels["Pneumonia"] == 0][:WINDOW]
    outputs, embeddings = runner.predict_and_embed(images[normal], generate=False)
    probs = drift.probabilities_of(outputs)
    checks = drift.check(reference, embeddings, probs, {}, alpha=ALPHA, permutations=50)
    label = next(c for c in checks if c.signal == "label:Pneumonia")
    assert label.alarm and label.detail["recent_rate"] < label.detail["reference_rate"]
    assert [c.signal for c in checks if c.signal.startswith("label:")] == ["label:Pneumonia"]  # only what it assesses


def test_checks_are_stored_and_exported(kermany, reference, tmp_path: Path) -> None:  # noqa: ANN001
    """run_checks over drift samples in the database, and the series /metrics gives the alert rules."""
    from libs.core.config import Settings
    from libs.lifecycle import registry
    from libs.observability.pipeline import pipeline_registry
    from libs.storage.db import get_engine, session_scope, upgrade_schema
    from libs.storage.models import JobRow

    settings = Settings(data_dir=tmp_path / "data", database_url=None, drift_window=WINDOW, drift_permutations=100)
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    model = registry.register(engine, settings, REPO_ROOT / "models" / "reference", "t")
    _, items, outputs, ref_embeddings, _, _ = kermany
    drift.write_reference(model, items, outputs, ref_embeddings)
    embeddings, probs, _ = _window(kermany, 3, lambda x: x ** 2)
    now = dt.datetime.now(dt.timezone.utc)
    for emb, p in zip(embeddings, probs, strict=True):
        job_id = str(uuid.uuid4())
        with session_scope(engine) as db:
            db.add(JobRow(id=job_id, study_uid="2.25.1", idempotency_key=job_id, request={}, state="reviewed",
                          created_at=now, updated_at=now))
        out = SimpleNamespace(predictions=[SimpleNamespace(label=label, probability=None if np.isnan(v) else float(v))
                                           for label, v in zip(__import__("libs.domain.labels", fromlist=["x"]).CHEXPERT_LABELS, p, strict=True)])
        drift.record_sample(engine, job_id, model.id, emb, out, {"view": "AP"})
    checks = drift.run_checks(engine, settings, model)
    assert "embedding_mmd" in _alarms(checks)
    assert {c.signal for c in drift.latest_checks(engine)} == {c.signal for c in checks}
    text = generate_latest(pipeline_registry(engine, None)).decode()
    assert 'cxr_drift_alarm{signal="embedding_mmd"} 1.0' in text
    assert f'cxr_model_state{{model="{model.id}",state="candidate"}} 1.0' in text
