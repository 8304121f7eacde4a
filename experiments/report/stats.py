"""Statistics over seeds: t-based confidence intervals and Welch's t-test (scipy.stats).

``t_interval(values)`` -> (mean, low, high) of the mean's 95% interval from Student's t
with n - 1 degrees of freedom; with one value the bounds are NaN (no spread to report).
``welch_p(a, b)`` -> two-sided p-value of Welch's unequal-variance t-test, NaN where
either sample has fewer than two values or neither has any spread (``NO_SPREAD``: the test
is undefined there; scipy's p of 6e-29 for two constant samples is float noise, not evidence).
``stars(p)`` marks p < .05 / .01 / .001.
``bounded_interval(values)`` -> (mean, low, high) of the t-interval clipped to [0, 1] (an
accuracy interval keeping its nominal coverage at 3 seeds);
``welch_diff(a, b)`` -> mean(a) - mean(b) and its Welch interval, within [-1, 1];
``tost_p(a, b, margin)`` -> the TOST equivalence p (statsmodels); ``holm(p)`` -> the
Holm-adjusted p-values (statsmodels); ``min_detectable_difference(sd, n)`` -> the smallest
difference a two-sample t-test of n seeds each detects at 80% power (statsmodels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

CONFIDENCE = 0.95
STAR_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
NO_SPREAD = "both groups' values are identical within each group (no spread): Welch's test is undefined"
POWER = 0.8
ALPHA = 0.05


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
    return float(
        stats.ttest_ind_from_stats(float(x.mean()), sx, x.size, float(y.mean()), sy, y.size, equal_var=False).pvalue
    )


def stars(p: float) -> str:
    """'***', '**', '*' for p below .001, .01, .05; '' otherwise or when p is NaN."""
    if math.isnan(p):
        return ""
    for level, mark in STAR_LEVELS:
        if p < level:
            return mark
    return ""


def bounded_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of accuracies ``values`` (``t_interval``),
    clipped to [0, 1] (clipping only drops impossible accuracies, so coverage stays nominal).

    Exact for normal seed spread at any n >= 2 (tests/test_verdicts.py simulates n = 3, 5, 10);
    a percentile bootstrap at 3 seeds returns [min, max] and covers about 76%, not 95%.
    One value: NaN bounds (``too_few_seeds`` says so); identical values: the value itself.
    """
    mean, low, high = t_interval(values, confidence)
    if math.isnan(high):
        return mean, low, high
    return mean, max(0.0, low), min(1.0, high)


def too_few_seeds(n: int) -> str | None:
    """Why an interval over ``n`` seeds is not given (the t-interval needs two), or None."""
    return f"{n} seed: an interval needs at least 2" if n < 2 else None


def welch_se_df(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(standard error, Welch-Satterthwaite degrees of freedom) of mean(a) - mean(b); NaN where
    either sample has < 2 values, (0, NaN) where neither has any spread."""
    x, y = _clean(a), _clean(b)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan
    vx = 0.0 if np.ptp(x) == 0.0 else float(x.var(ddof=1)) / x.size
    vy = 0.0 if np.ptp(y) == 0.0 else float(y.var(ddof=1)) / y.size
    if vx + vy == 0.0:
        return 0.0, math.nan
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    return math.sqrt(vx + vy), df


def diff_interval(diff: float, se: float, df: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high): the Welch ``confidence`` interval of a difference of accuracies, within [-1, 1]."""
    if math.isnan(se):
        return math.nan, math.nan
    if se == 0.0:
        return diff, diff
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return max(-1.0, diff - half), min(1.0, diff + half)


def welch_diff(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): the difference and its Welch ``confidence`` interval
    (``diff_interval``, within [-1, 1]); NaN bounds where either sample has < 2 values."""
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    return (diff, *diff_interval(diff, *welch_se_df(a, b), confidence))


def tost_p(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """p of the two one-sided tests (TOST, statsmodels ``ttost_ind``, Welch variances) that
    mean(a) - mean(b) lies within (-margin, +margin); NaN where Welch's test is undefined."""
    if welch_undefined(a, b) is not None:
        return math.nan
    x, y = _clean(a), _clean(b)
    return float(ttost_ind(x, y, -margin, margin, usevar="unequal")[0])


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (statsmodels ``multipletests``) of the non-NaN
    ``pvalues``, as one family; NaN stays NaN."""
    arr = np.asarray(pvalues, dtype=float)
    out = np.full(arr.shape, math.nan)
    present = ~np.isnan(arr)
    if present.any():
        out[present] = multipletests(arr[present], alpha=ALPHA, method="holm")[1]
    return out


def min_detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The difference of means a two-sided two-sample t-test with ``n`` values per group detects
    with probability ``power`` at level ``alpha``, given the standard deviation ``sd``
    (statsmodels ``TTestIndPower``); NaN for n < 2 or an unknown sd."""
    if n < 2 or math.isnan(sd):
        return math.nan
    effect = TTestIndPower().solve_power(
        effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return float(effect) * sd
