"""Drift monitoring without labels (after CheXstray: metadata, image embeddings, output probabilities),
and per-finding F1 from radiologist feedback for concept drift (libs/observability/pipeline.py exports it).

The reference is what the model saw when it passed its validation gate (libs/lifecycle/gate.py): the held-out
studies' encoder embeddings, head probabilities and metadata, written beside the registry copy. Each check
compares the latest `drift_window` served studies (drift_samples, one row per job) with it:

- embedding_mmd: the squared maximum mean discrepancy (unbiased) between the two embedding samples with a
  Gaussian kernel whose width is the median pairwise distance; its p-value from `drift_permutations`
  random relabellings of the pooled sample (a permutation test: calibrated for this model, these
  embeddings and these sample sizes, no distributional assumption);
- meta:<field>: view, manufacturer and sex by a chi-square test of the two frequency tables, age (10-year
  bands' centres) and pixel spacing by a two-sample Kolmogorov-Smirnov test;
- label:<observation>: the share the head calls positive, by Fisher's exact test (label drift).

Each family (embedding, metadata, labels) alarms at `drift_alpha` with Bonferroni over its members, so a
same-distribution sample alarms with probability about `drift_alpha` per family and check.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from libs.domain.labels import CHEXPERT_LABELS

log = logging.getLogger(__name__)

CATEGORICAL = ("view", "manufacturer", "sex")
NUMERIC = ("age", "pixel_spacing")
MAX_REFERENCE = 1000
_MMD_REFERENCE = 500  # reference rows the MMD uses (a fixed random subset): kernel cost grows with the square


@dataclass(frozen=True)
class Reference:
    embeddings: np.ndarray | None  # [N, D]
    probabilities: np.ndarray  # [N, 14], NaN where not assessed
    thresholds: np.ndarray  # [14], NaN where not assessed
    meta: dict[str, list]  # field -> N values (None where unknown)


@dataclass(frozen=True)
class Check:
    signal: str
    statistic: float
    p_value: float
    alarm: bool
    samples: int
    detail: dict[str, Any]


def age_band(age: float | int | None) -> float | None:
    """The centre of the 10-year band (5, 15, ... 95): enough for drift and bias, identifies no one."""
    if age is None or not 0 <= float(age) <= 130:
        return None
    return min(9, int(float(age) // 10)) * 10 + 5.0


def probabilities_of(outputs) -> np.ndarray:  # noqa: ANN001 - ModelOutputs
    """[N, 14] head probabilities in CheXpert order, NaN where an observation is not assessed."""
    return np.array([[np.nan if p.probability is None else p.probability for p in o.predictions] for o in outputs],
                    dtype=np.float64)


def reference_path(model) -> Path:  # noqa: ANN001 - registry.ModelVersion
    return Path(str(model.path) + "-drift-reference.npz")


def write_reference(model, items, outputs, embeddings: np.ndarray | None) -> Path:  # noqa: ANN001
    """The gate's held-out studies as the drift reference of `model` (at most MAX_REFERENCE, seeded)."""
    n = len(items)
    keep = np.sort(np.random.default_rng(0).permutation(n)[:MAX_REFERENCE])
    probs = probabilities_of(outputs)
    thresholds = np.array([np.nan if p.threshold is None else p.threshold for p in outputs[0].predictions])
    meta = {f: [_meta_value(f, items[i].meta.get(f)) for i in keep] for f in (*CATEGORICAL, *NUMERIC)}
    path = reference_path(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Metadata as JSON text, not object arrays: the reference loads without pickle.
    arrays = {"probabilities": probs[keep], "thresholds": thresholds, "meta_json": np.array(json.dumps(meta))}
    if embeddings is not None:
        arrays["embeddings"] = embeddings[keep].astype(np.float32)
    np.savez_compressed(path, **arrays)
    return path


def _meta_value(field: str, value):  # noqa: ANN001, ANN202
    if value in (None, ""):
        return None
    if field == "age":
        return age_band(float(value))
    if field == "pixel_spacing":
        return round(float(value), 3)
    return str(value).strip().upper() if field in ("view", "sex") else str(value).strip()


def load_reference(path: Path) -> Reference:
    with np.load(path, allow_pickle=False) as data:
        return Reference(embeddings=data["embeddings"] if "embeddings" in data else None,
                         probabilities=data["probabilities"], thresholds=data["thresholds"],
                         meta=json.loads(str(data["meta_json"])))


# ---- the tests -------------------------------------------------------------------------------

def _sq_distances(x: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", x, x)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)


def _mmd2(k: np.ndarray, in_x: np.ndarray) -> float:
    """Unbiased MMD² from the pooled kernel matrix and a boolean mask of the first sample."""
    x, y = in_x, ~in_x
    m, n = int(x.sum()), int(y.sum())
    kxx, kyy, kxy = k[np.ix_(x, x)], k[np.ix_(y, y)], k[np.ix_(x, y)]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def mmd_test(reference: np.ndarray, recent: np.ndarray, permutations: int, seed: int = 0) -> tuple[float, float, float]:
    """(MMD², permutation p-value, kernel width) of two embedding samples [N, D] and [M, D]."""
    rng = np.random.default_rng(seed)
    if len(reference) > _MMD_REFERENCE:
        reference = reference[rng.permutation(len(reference))[:_MMD_REFERENCE]]
    pooled = np.concatenate([reference, recent]).astype(np.float64)
    d2 = _sq_distances(pooled)
    width2 = float(np.median(d2[np.triu_indices(len(pooled), 1)])) or 1.0
    k = np.exp(-d2 / width2)
    mask = np.zeros(len(pooled), dtype=bool)
    mask[: len(reference)] = True
    observed = _mmd2(k, mask)
    exceed = 0
    for _ in range(permutations):
        if _mmd2(k, rng.permutation(mask)) >= observed:
            exceed += 1
    return observed, (exceed + 1) / (permutations + 1), float(np.sqrt(width2))


def _categorical(reference: list, recent: list) -> tuple[float, float, dict] | None:
    from scipy.stats import chi2_contingency

    ref = [v for v in reference if v is not None]
    now = [v for v in recent if v is not None]
    categories = sorted(set(ref) | set(now))
    if len(ref) < 5 or len(now) < 5 or len(categories) < 2:
        return None
    table = np.array([[ref.count(c) for c in categories], [now.count(c) for c in categories]])
    stat, p, _, _ = chi2_contingency(table)
    return float(stat), float(p), {"reference": dict(zip(categories, table[0].tolist())),
                                   "recent": dict(zip(categories, table[1].tolist()))}


def _numeric(reference: list, recent: list) -> tuple[float, float, dict] | None:
    from scipy.stats import ks_2samp

    ref = np.array([v for v in reference if v is not None], dtype=float)
    now = np.array([v for v in recent if v is not None], dtype=float)
    if len(ref) < 5 or len(now) < 5:
        return None
    result = ks_2samp(ref, now)
    return float(result.statistic), float(result.pvalue), {"reference_median": float(np.median(ref)),
                                                          "recent_median": float(np.median(now))}


def check(reference: Reference, embeddings: np.ndarray | None, probabilities: np.ndarray, meta: dict[str, list],
          alpha: float, permutations: int) -> list[Check]:
    """Every signal for one window of recent studies against the reference."""
    from libs.lifecycle.stats import fisher_exact

    out: list[Check] = []
    n = len(probabilities)
    if embeddings is not None and reference.embeddings is not None and len(embeddings) >= 10:
        stat, p, width = mmd_test(reference.embeddings, embeddings, permutations)
        out.append(Check("embedding_mmd", stat, p, p < alpha, len(embeddings),
                         {"kernel_width": width, "reference": int(min(len(reference.embeddings), _MMD_REFERENCE)),
                          "permutations": permutations}))
    family = []
    for field in CATEGORICAL:
        if (r := _categorical(reference.meta.get(field, []), meta.get(field, []))) is not None:
            family.append(("meta:" + field, *r))
    for field in NUMERIC:
        if (r := _numeric(reference.meta.get(field, []), meta.get(field, []))) is not None:
            family.append(("meta:" + field, *r))
    out += [Check(s, st, p, p < alpha / len(family), n, d) for s, st, p, d in family]
    labels = []
    for j, label in enumerate(CHEXPERT_LABELS):
        t = reference.thresholds[j]
        if np.isnan(t) or label == "No Finding":
            continue
        ref_pos = int(np.sum(reference.probabilities[:, j] >= t))
        now_pos = int(np.sum(probabilities[:, j] >= t))
        p = fisher_exact(now_pos, n, ref_pos, len(reference.probabilities))
        labels.append((f"label:{label}", now_pos / max(n, 1) - ref_pos / max(len(reference.probabilities), 1), p,
                       {"recent_rate": now_pos / max(n, 1), "reference_rate": ref_pos / len(reference.probabilities)}))
    out += [Check(s, st, p, p < alpha / len(labels), n, d) for s, st, p, d in labels]
    return out


# ---- served studies -------------------------------------------------------------------------

def sample_meta(instance, request) -> dict[str, Any]:  # noqa: ANN001 - InstanceRow | None, ReportRequest
    """What a drift sample keeps of a study's metadata: nothing that identifies the patient."""
    meta: dict[str, Any] = {"view": None, "manufacturer": None, "modality": None, "pixel_spacing": None,
                            "sex": None, "age": None}
    if instance is not None:
        meta["view"] = (instance.view or "").upper() or None
        meta["modality"] = instance.modality
        meta.update(_header_meta(instance.path))
    context = request.clinical_context
    if context is not None:
        meta["sex"], meta["age"] = context.sex, age_band(context.age)
    return meta


def _header_meta(path: str | None) -> dict[str, Any]:
    import pydicom

    if not path or not Path(path).is_file():
        return {}
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Manufacturer", "PixelSpacing",
                                                                           "ImagerPixelSpacing"])
    except Exception:  # noqa: BLE001 - metadata is best effort
        return {}
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    return {"manufacturer": str(ds.get("Manufacturer") or "").strip() or None,
            "pixel_spacing": round(float(spacing[0]), 3) if spacing else None}


def record_sample(engine: Engine, job_id: str, model_id: str, embedding: np.ndarray | None, output, meta: dict) -> None:  # noqa: ANN001
    from libs.storage.db import session_scope
    from libs.storage.models import DriftSampleRow

    with session_scope(engine) as session:
        if session.get(DriftSampleRow, job_id) is not None:
            return  # a redelivered message
        session.add(DriftSampleRow(
            job_id=job_id, model_id=model_id, at=dt.datetime.now(dt.timezone.utc),
            embedding=None if embedding is None else [round(float(v), 6) for v in embedding],
            probabilities={p.label: p.probability for p in output.predictions if p.probability is not None},
            meta=meta))


def run_checks(engine: Engine, settings, model) -> list[Check]:  # noqa: ANN001 - Settings, registry.ModelVersion
    """Checks the latest drift_window samples of `model` against its reference and stores the results.
    [] when the model has no reference (never validated) or too few samples yet."""
    from libs.storage.db import session_scope
    from libs.storage.models import DriftCheckRow, DriftSampleRow

    path = reference_path(model)
    if not path.is_file():
        log.info("drift: %s has no reference (run its validation gate)", model.id)
        return []
    with session_scope(engine) as session:
        rows = list(session.scalars(select(DriftSampleRow).where(DriftSampleRow.model_id == model.id)
                                    .order_by(DriftSampleRow.at.desc()).limit(settings.drift_window)))
        samples = [(r.embedding, r.probabilities, r.meta) for r in rows]
    if len(samples) < 20:
        return []
    embeddings = None
    if all(e is not None for e, _, _ in samples):
        embeddings = np.array([e for e, _, _ in samples], dtype=np.float32)
    probabilities = np.array([[p.get(label, np.nan) for label in CHEXPERT_LABELS] for _, p, _ in samples])
    meta = {f: [m.get(f) for _, _, m in samples] for f in (*CATEGORICAL, *NUMERIC)}
    checks = check(load_reference(path), embeddings, probabilities, meta, settings.drift_alpha,
                   settings.drift_permutations)
    now = dt.datetime.now(dt.timezone.utc)
    with session_scope(engine) as session:
        for c in checks:
            session.add(DriftCheckRow(at=now, model_id=model.id, signal=c.signal, statistic=c.statistic,
                                      p_value=c.p_value, alarm=c.alarm, samples=c.samples, detail=c.detail))
    for c in checks:
        if c.alarm:
            log.warning("drift: %s %s p=%.4g (%d studies)", model.id, c.signal, c.p_value, c.samples)
    return checks


def latest_checks(engine: Engine) -> list[Check]:
    """The most recent check of each signal (what /metrics exports)."""
    from sqlalchemy import func

    from libs.storage.db import session_scope
    from libs.storage.models import DriftCheckRow

    with session_scope(engine) as session:
        newest = select(DriftCheckRow.signal, func.max(DriftCheckRow.id).label("id")).group_by(DriftCheckRow.signal).subquery()
        rows = session.scalars(select(DriftCheckRow).join(newest, DriftCheckRow.id == newest.c.id)).all()
        return [Check(r.signal, r.statistic, r.p_value, r.alarm, r.samples, r.detail) for r in rows]
