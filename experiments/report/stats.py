"""Statistics over seeds: t-based confidence intervals and Welch's t-test (scipy.stats).

``t_interval(values)`` -> (mean, low, high) of the mean's 95% interval from Student's t
with n - 1 degrees of freedom; with one value the bounds are NaN (no spread to report).
``welch_p(a, b)`` -> two-sided p-value of Welch's unequal-variance t-test, NaN where
either sample has fewer than two values or neither has any spread (``NO_SPREAD``: the test
is undefined there; scipy's p of 6e-29 for two constant samples is float noise, not evidence). ``stars(p)`` marks p < .05 / .01 / .001.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
STAR_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
NO_SPREAD = "both groups' values are identical within each group (no spread): Welch's test is undefined"


def _clean(values: Sequence[float]) -> np.ndarray:
    """Values as a float array; NaN (a metric a run lacks) is dropped, not counted as 0."""
    arr = np.asarray(values, dtype=float)
    return arr[~np.isnan(arr)]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the t-based ``confidence`` interval of the mean of ``values``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence = {confidence}: allowed is 0 < confidence < 1")
    arr = _clean(values)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, math.nan, math.nan
    if np.ptp(arr) == 0.0:  # identical values: no spread (and no float round-off posing as one)
        return mean, mean, mean
    sem = float(stats.sem(arr))
    low, high = stats.t.interval(confidence, df=arr.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def welch_undefined(a: Sequence[float], b: Sequence[float]) -> str | None:
    """Why Welch's t-test of ``a`` against ``b`` is undefined (NaN dropped first), or None when it is defined."""
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return "fewer than two values in a group"
    if np.ptp(x) == 0.0 and np.ptp(y) == 0.0:  # the t statistic is 0/0 or x/0: a p would be float noise
        return NO_SPREAD
    return None


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test of mean(a) = mean(b); NaN where it is undefined
    (``welch_undefined``: fewer than two values in a sample, or no spread in either)."""
    if welch_undefined(a, b) is not None:
        return math.nan
    x, y = _clean(a), _clean(b)
    # from summary statistics, with an exact 0 spread for a sample of identical values
    sx, sy = (0.0 if np.ptp(v) == 0.0 else float(v.std(ddof=1)) for v in (x, y))
    return float(stats.ttest_ind_from_stats(float(x.mean()), sx, x.size, float(y.mean()), sy, y.size,
                                            equal_var=False).pvalue)


def stars(p: float) -> str:
    """'***', '**', '*' for p below .001, .01, .05; '' otherwise or when p is NaN."""
    if math.isnan(p):
        return ""
    for level, mark in STAR_LEVELS:
        if p < level:
            return mark
    return ""
