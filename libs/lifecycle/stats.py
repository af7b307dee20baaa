"""The statistics the lifecycle decides with, on scipy: proportions with Wilson intervals, and the tests
the canary comparison and the drift checks use."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Proportion:
    hits: int
    total: int
    low: float | None  # 95 % Wilson interval
    high: float | None

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def as_dict(self) -> dict:
        return {"value": self.value, "hits": self.hits, "total": self.total, "ci95": [self.low, self.high]}


def proportion(hits: int, total: int, z: float = 1.959964) -> Proportion:
    """hits / total with its Wilson score interval (sound at 0 %, 100 % and small n, unlike the normal one)."""
    if total == 0:
        return Proportion(0, 0, None, None)
    p = hits / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # Exactly 0 and 1 at the ends (the arithmetic leaves 1e-16 off).
    return Proportion(hits, total, 0.0 if hits == 0 else low, 1.0 if hits == total else high)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (a right where b was wrong, and back)."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def wilcoxon_paired(a: list[float], b: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired values (1.0 when every pair is equal)."""
    from scipy.stats import wilcoxon

    if all(x == y for x, y in zip(a, b, strict=True)):
        return 1.0
    return float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)


def mann_whitney(a: list[float], b: list[float]) -> float:
    from scipy.stats import mannwhitneyu

    if not a or not b:
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def fisher_exact(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    from scipy.stats import fisher_exact as fisher

    return float(fisher([[hits_a, n_a - hits_a], [hits_b, n_b - hits_b]]).pvalue)
