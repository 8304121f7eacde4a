"""Statistics over seeds: t-based confidence intervals and Welch's t-test (scipy.stats).

``t_interval(values)`` -> (mean, low, high) of the mean's 95% interval from Student's t
with n - 1 degrees of freedom; with one value the bounds are NaN (no spread to report).
``welch_p(a, b)`` -> two-sided p-value of Welch's unequal-variance t-test, NaN where
either sample has fewer than two values or neither has any spread (``NO_SPREAD``: the test
is undefined there; scipy's p of 6e-29 for two constant samples is float noise, not evidence).
``stars(p)`` marks p < .05 / .01 / .001.
``bounded_interval(values)`` -> (mean, low, high) of a percentile bootstrap (scipy), which
never leaves the range of the values (an accuracy interval stays in [0, 1]);
``welch_diff(a, b)`` -> mean(a) - mean(b) and its 95% Welch interval; ``holm(p)`` -> the
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

CONFIDENCE = 0.95
STAR_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
NO_SPREAD = "both groups' values are identical within each group (no spread): Welch's test is undefined"
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # a fixed seed: the same runs give the same table
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
    """(mean, low, high): the percentile bootstrap ``confidence`` interval of the mean of ``values``.

    Its bounds are means of resamples, so they lie within [min(values), max(values)]: an accuracy
    interval never leaves [0, 1]. One value: NaN bounds; identical values: the value itself.
    """
    arr = _clean(values)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, math.nan, math.nan
    if np.ptp(arr) == 0.0:
        return mean, mean, mean
    res = stats.bootstrap(
        (arr,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = (float(np.clip(b, arr.min(), arr.max())) for b in res.confidence_interval)  # float round-off
    return mean, low, high


def welch_diff(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): the difference and its Welch ``confidence`` interval
    (Welch-Satterthwaite degrees of freedom); NaN bounds where either sample has < 2 values."""
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return diff, math.nan, math.nan
    vx = 0.0 if np.ptp(x) == 0.0 else float(x.var(ddof=1)) / x.size
    vy = 0.0 if np.ptp(y) == 0.0 else float(y.var(ddof=1)) / y.size
    if vx + vy == 0.0:
        return diff, diff, diff
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(vx + vy)
    return diff, diff - half, diff + half


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
