"""Calibration (Platt scaling), threshold rules and ranking metrics, in numpy (no torch).

Platt scaling per label: p = sigmoid(a * logit + b), (a, b) minimising the log-loss on validation.
Threshold rules (on calibrated validation probabilities):
- "sensitivity:<x>": the largest threshold whose validation sensitivity is >= x (critical findings use
  x = 0.98, the design's false-negative budget);
- "sensitivity_lower:<x>": the largest threshold whose validation sensitivity has a 95 % Wilson LOWER
  bound >= x: the point estimate then sits a sampling margin above x (with 770 validation positives and
  x = 0.95, about 1.5 points), so the operating point keeps x on a new sample of the same population
  with high probability instead of half the time;
- "youden": the threshold maximising sensitivity + specificity - 1.
"""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def fit_platt(logits: np.ndarray, y: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """(a, b) for sigmoid(a * logit + b), Newton's method on the mean log-loss, with Platt's (1999)
    smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2), which keep small validation sets from
    producing infinitely sharp fits."""
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if len(z) == 0 or t.min() == t.max():
        return 1.0, 0.0
    n_pos, n_neg = t.sum(), len(t) - t.sum()
    t = np.where(t > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b, lam = 1.0, 0.0, 1e-6
    for _ in range(iters):
        p = sigmoid(a * z + b)
        w = np.clip(p * (1 - p), 1e-12, None)
        ga = np.mean((p - t) * z) + lam * a
        gb = np.mean(p - t)
        haa = np.mean(w * z * z) + lam
        hab = np.mean(w * z)
        hbb = np.mean(w) + 1e-12
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    return float(a), float(b)


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with thresholds descending; a point per distinct score."""
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (1 + distinct) - tps
    pos, neg = max(y.sum(), 1e-12), max(len(y) - y.sum(), 1e-12)
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos], np.r_[np.inf, s[distinct]]


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y)
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    return float(np.trapezoid(tpr, fpr))


def choose_threshold(y: np.ndarray, prob: np.ndarray, rule: str) -> float:
    y = np.asarray(y, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    if y.sum() == 0 or y.sum() == len(y):
        return 0.5
    if rule.startswith("sensitivity:"):
        target = float(rule.split(":", 1)[1])
        pos = np.sort(prob[y == 1])
        # The k-th smallest positive score keeps len - k positives at or above it.
        k = int(math.floor(len(pos) * (1.0 - target) + 1e-9))
        return float(pos[min(k, len(pos) - 1)])
    if rule.startswith("sensitivity_lower:"):
        target = float(rule.split(":", 1)[1])
        pos = np.sort(prob[y == 1])
        n = len(pos)
        # Keeping the n - k highest positives gives sensitivity (n - k) / n; the largest k whose Wilson
        # lower bound still reaches the target.
        best = 0
        for k in range(n):
            if wilson_lower(n - k, n) >= target:
                best = k
            else:
                break
        return float(pos[best])
    if rule == "youden":
        fpr, tpr, thr = roc_curve(y, prob)
        i = int(np.argmax(tpr[1:] - fpr[1:])) + 1
        return float(thr[i])
    raise ValueError(f"unknown threshold rule {rule!r}")


def wilson_lower(successes: int, n: int, z: float = 1.959964) -> float:
    """Lower end of the Wilson score interval of a proportion (95 % by default)."""
    if n <= 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / (1 + z * z / n)


def operating_point(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict:
    y = np.asarray(y).astype(bool)
    pred = np.asarray(prob) >= threshold
    tp, fn = int((pred & y).sum()), int((~pred & y).sum())
    tn, fp = int((~pred & ~y).sum()), int((pred & ~y).sum())
    return {"threshold": float(threshold), "sensitivity": tp / max(tp + fn, 1), "specificity": tn / max(tn + fp, 1),
            "ppv": tp / max(tp + fp, 1), "npv": tn / max(tn + fn, 1), "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def reliability(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error and the per-bin (mean confidence, observed rate, count)."""
    y = np.asarray(y, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            rows.append({"bin": b, "confidence": None, "observed": None, "count": 0})
            continue
        conf, obs = float(prob[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(conf - obs)
        rows.append({"bin": b, "confidence": conf, "observed": obs, "count": int(m.sum())})
    return {"ece": float(ece), "bins": rows}


def bootstrap_ci(stat, n: int, resamples: int = 1000, seed: int = 0, groups: np.ndarray | None = None) -> tuple[float, float]:
    """95 % percentile interval of stat(indices) over `resamples` resamples of range(n) (or of groups)."""
    rng = np.random.default_rng(seed)
    values = []
    if groups is not None:
        uniq, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    for _ in range(resamples):
        if groups is None:
            idx = rng.integers(0, n, n)
        else:
            pick = rng.integers(0, len(members), len(members))
            idx = np.concatenate([members[g] for g in pick])
        v = stat(idx)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)
