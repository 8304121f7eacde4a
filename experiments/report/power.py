"""Power of a table's comparisons, at the level its correction actually applies.

Holm's first step tests the smallest p at alpha / k (k comparisons in the family), so a
difference is detectable only if it would pass that step: ``family_alpha(k)`` is that level.

``mdd(sd, n, alpha)`` -> the smallest difference a two-sided two-sample t-test of ``n`` seeds a
side detects with 80% power at ``alpha`` (statsmodels ``TTestIndPower``).
``seeds_to_decide(diff, sd, margin, alpha)`` -> the seeds per side a comparison needs to reach a
verdict with 80% power if its observed difference and spread were the truth: for |diff| >= margin
Welch's two-sided test at ``alpha``; inside the margin, TOST, each one-sided test at ``alpha`` with
90% power (both must pass: about 80% together). ``None`` past ``MAX_SEEDS`` (a difference at the
margin itself can never be decided).
``power_note(runs, k, margin)`` -> one sentence per task for the table's notes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from bpbench.experiments.report.stats import ALPHA, POWER

MAX_SEEDS = 1000
EQUIVALENCE_POWER = 1.0 - (1.0 - POWER) / 2  # per one-sided test of TOST: both pass with about POWER


def family_alpha(k: int, alpha: float = ALPHA) -> float:
    """The level Holm's first step applies to the smallest of ``k`` p-values: alpha / k."""
    return alpha / max(k, 1)


def mdd(sd: float, n: int, alpha: float) -> float:
    """Smallest difference of means detected with ``POWER`` by a two-sided t-test, ``n`` a side."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    effect = TTestIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=POWER, ratio=1.0)
    return float(effect) * sd


def _seeds_for(effect: float, alpha: float, power: float, alternative: str) -> int | None:
    """The smallest n >= 2 a side whose statsmodels power reaches ``power`` (bisection over n:
    power rises with n; statsmodels' own solver fails to converge near n = 2), None past MAX_SEEDS."""
    if not effect > 0 or not math.isfinite(effect):
        return None

    def reaches(n: int) -> bool:
        kwargs = {"effect_size": effect, "nobs1": n, "alpha": alpha, "ratio": 1.0, "alternative": alternative}
        got = TTestIndPower().power(**kwargs)
        if math.isnan(got):  # scipy's noncentral t fails far in its tail (power near 1): the normal approximation
            got = NormalIndPower().power(**kwargs)
        return bool(got >= power)

    if not reaches(MAX_SEEDS):
        return None
    low, high = 1, MAX_SEEDS  # reaches(high) holds; the answer is in (low, high]
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if mid >= 2 and reaches(mid) else (mid, high)
    return high


def seeds_to_decide(diff: float, sd: float, margin: float, alpha: float) -> int | None:
    """Seeds per side to decide this comparison (see the module doc); None past ``MAX_SEEDS``."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or sd <= 0:
        return None
    if abs(diff) >= margin:
        return _seeds_for(abs(diff) / sd, alpha, POWER, "two-sided")
    return _seeds_for((margin - abs(diff)) / sd, alpha, EQUIVALENCE_POWER, "larger")


def pooled_spread(runs: pd.DataFrame) -> tuple[float, int] | None:
    """(pooled within-configuration sd of test accuracy, median seeds) of one task's runs, or None."""
    by = runs.groupby(["learner", "config"])["test_acc"]
    counts, variances = by.count(), by.var(ddof=1)
    usable = counts[(counts >= 2) & variances.notna()].index
    if not len(usable):
        return None
    dof = (counts[usable] - 1).sum()
    sd = math.sqrt(float(((counts[usable] - 1) * variances[usable]).sum()) / dof)
    return sd, int(np.median(counts[usable]))


def power_note(runs: pd.DataFrame, k: int, margin: float) -> str:
    """Per task: the minimum detectable difference at Holm's first-step level alpha / k and the
    seeds needed to show equivalence within ±margin when the true difference is 0."""
    alpha = family_alpha(k)
    parts = []
    for task, group in runs.groupby("task", sort=True):
        spread = pooled_spread(group)
        if spread is None:
            parts.append(f"{task} n/a (fewer than 2 seeds)")
            continue
        sd, n = spread
        need = seeds_to_decide(0.0, sd, margin, alpha)
        need_text = f"{need} seeds" if need is not None else f"over {MAX_SEEDS} seeds"
        parts.append(f"{task} {mdd(sd, n, alpha):.3f} (n = {n}, sd {sd:.3f}; equivalence needs {need_text})")
    return (
        f"Power (statsmodels TTestIndPower, pooled seed spread): the minimum detectable difference in test accuracy "
        f"at {POWER:.0%} power, two-sided alpha {ALPHA:g}/{k} = {alpha:.2g} (Holm's first step over the {k} "
        f"comparisons), and the seeds a side to show equivalence within ±{margin:g} if the true difference is 0: "
        f"{'; '.join(parts)}. A smaller true difference is likely to read as inconclusive."
    )
