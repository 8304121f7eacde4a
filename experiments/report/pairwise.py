"""Pairwise statistics of a summary table: each row against its reference, corrected as a family.

``compare(acc, ref_acc, margin)`` -> the raw Welch and TOST p, and the difference of mean test
accuracy to the reference with what its interval needs (``report/verdicts.py`` adjusts the p over
the table and sets the family-level interval and the verdict); ``time_columns(group)`` the median
time to target and "reached k/n" of one group of runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bpbench.experiments.plan.verdict import DEFAULT_MARGIN
from bpbench.experiments.report.scoring import TTT_COLUMNS, median_time
from bpbench.experiments.report.stats import tost_p, welch_diff, welch_p, welch_se_df

P_MODES = ("holm", "raw")
COMPARE_COLUMNS = ("p_raw", "tost_p_raw", "diff_mean", "diff_low", "diff_high", "diff_se", "diff_df", "diff_sd")
NOTE_ACC = (
    "Test acc: mean [95% t-interval over seeds, clipped to [0, 1]] (it keeps its nominal coverage from 2 seeds on "
    "when seed accuracies are near normal; a percentile bootstrap's over 3 seeds is their [min, max], which covers "
    "76%); a row of one seed has no interval and says so."
)
NOTE_SPLIT_SHARED = (
    "Splits: every seed of a task shares one stratified train/val/test split, so the intervals "
    "cover training randomness, not data-split variance."
)
NOTE_SPLIT_OWN = (
    "Splits: each seed draws its own stratified train/val/test split (seeds_resample_split = true), so "
    "the intervals cover data-split variance too."
)


def compare(acc: Sequence[float], ref_acc: Sequence[float] | None, margin: float = DEFAULT_MARGIN) -> dict[str, float]:
    """p_raw (Welch), tost_p_raw (equivalence within ±``margin``), diff_mean, its 95% diff_low and
    diff_high, diff_se, diff_df (Welch) and diff_sd (the two groups' pooled sd) of ``acc`` against
    ``ref_acc`` (NaN without a reference)."""
    if ref_acc is None:
        return dict.fromkeys(COMPARE_COLUMNS, math.nan)
    diff, low, high = welch_diff(acc, ref_acc)
    se, df = welch_se_df(acc, ref_acc)
    x, y = np.asarray(acc, dtype=float), np.asarray(ref_acc, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    sd = math.sqrt((np.var(x, ddof=1) + np.var(y, ddof=1)) / 2) if x.size > 1 and y.size > 1 else math.nan
    return {
        "p_raw": welch_p(acc, ref_acc),
        "tost_p_raw": tost_p(acc, ref_acc, margin),
        "diff_mean": diff,
        "diff_low": low,
        "diff_high": high,
        "diff_se": se,
        "diff_df": df,
        "diff_sd": sd,
    }


def check_mode(mode: str) -> None:
    if mode not in P_MODES:
        raise ValueError(f"--p {mode!r}: allowed: {', '.join(P_MODES)}")


def split_note(resampled: bool) -> str:
    return NOTE_SPLIT_OWN if resampled else NOTE_SPLIT_SHARED


def time_columns(group: pd.DataFrame) -> dict[str, float | int]:
    """ttt_<measure>_median (inf: at most half reached), reached and measured counts of one group;
    NaN and 0/0 when the runs carry no time to target."""
    if "reached" not in group or group["target"].isna().all():
        return {**{f"{c}_median": math.nan for c in TTT_COLUMNS}, "reached": 0, "ttt_n": 0}
    measured = group[group["target"].notna()]
    return {
        **{f"{c}_median": median_time(measured[c]) for c in TTT_COLUMNS},
        "reached": int(measured["reached"].fillna(False).astype(bool).sum()),
        "ttt_n": len(measured),
    }
