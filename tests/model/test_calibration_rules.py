"""Threshold rules: the plain sensitivity rule and the one with a sampling margin."""

from __future__ import annotations

import numpy as np

from libs.model.calibration import choose_threshold, operating_point, wilson_lower


def _scores(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(770), np.zeros(269)]
    return y, np.r_[rng.beta(8, 1, 770), rng.beta(1, 8, 269)]


def test_sensitivity_rule_reaches_the_target() -> None:
    y, p = _scores()
    thr = choose_threshold(y, p, "sensitivity:0.95")
    assert 0.95 <= operating_point(y, p, thr)["sensitivity"] < 0.952


def test_sensitivity_lower_rule_keeps_a_margin_whose_lower_bound_reaches_the_target() -> None:
    y, p = _scores()
    thr = choose_threshold(y, p, "sensitivity_lower:0.95")
    op = operating_point(y, p, thr)
    assert wilson_lower(op["tp"], op["tp"] + op["fn"]) >= 0.95
    # One positive fewer above the threshold would break the bound: it is the largest such threshold.
    assert wilson_lower(op["tp"] - 1, op["tp"] + op["fn"]) < 0.95
    assert thr < choose_threshold(y, p, "sensitivity:0.95")
    # On fresh samples of the same population the margin holds the target far more often than the plain rule.
    plain = lower = 0
    for seed in range(1, 41):
        y2, p2 = _scores(seed)
        plain += operating_point(y2, p2, choose_threshold(y, p, "sensitivity:0.95"))["sensitivity"] >= 0.95
        lower += operating_point(y2, p2, thr)["sensitivity"] >= 0.95
    assert lower >= 38 and plain < lower


def test_wilson_lower_bound() -> None:
    assert abs(wilson_lower(731, 770) - 0.9315) < 1e-3
    assert wilson_lower(0, 0) == 0.0
