"""Pairwise statistics of a summary table: each row against its reference, corrected as a family.

``compare(acc, ref_acc)`` -> the raw Welch p, and the difference of mean test accuracy to the
reference with its 95% Welch interval. ``adjust(summary, mode)`` replaces the table's p column
by the Holm-adjusted p over all comparisons of the table (``mode = "holm"``, the default) or
keeps the raw p (``"raw"``). ``detectable_note(runs)`` says per task the smallest difference
the study could detect at 80% power; ``time_columns(group)`` the median time to target and
"reached k/n" of one group of runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bpbench.experiments.report.scoring import TTT_COLUMNS, median_time
from bpbench.experiments.report.stats import ALPHA, POWER, holm, min_detectable_difference, welch_diff, welch_p

P_MODES = ("holm", "raw")
NOTE_HOLM = "p is Holm-adjusted over the {n} comparisons of this table (statsmodels multipletests; raw p with --p raw)."
NOTE_RAW = "p is raw, not adjusted for the {n} comparisons of this table (Holm-adjusted p is the default)."
NOTE_DIFF = (
    "Diff: mean test accuracy minus the reference's, with the 95% Welch interval of the difference. "
    "Test acc: mean [95% percentile bootstrap interval over seeds] (it stays within the accuracies seen, "
    "so within [0, 1])."
)
NOTE_SPLIT_SHARED = (
    "Splits: every seed of a task shares one stratified train/val/test split, so the intervals "
    "cover training randomness, not data-split variance."
)
NOTE_SPLIT_OWN = (
    "Splits: each seed draws its own stratified train/val/test split (seeds_resample_split = true), so "
    "the intervals cover data-split variance too."
)


def compare(acc: Sequence[float], ref_acc: Sequence[float] | None) -> dict[str, float]:
    """p_raw, diff_mean, diff_low, diff_high of ``acc`` against ``ref_acc`` (NaN without a reference)."""
    if ref_acc is None:
        return {"p_raw": math.nan, "diff_mean": math.nan, "diff_low": math.nan, "diff_high": math.nan}
    diff, low, high = welch_diff(acc, ref_acc)
    return {"p_raw": welch_p(acc, ref_acc), "diff_mean": diff, "diff_low": low, "diff_high": high}


def check_mode(mode: str) -> None:
    if mode not in P_MODES:
        raise ValueError(f"--p {mode!r}: allowed: {', '.join(P_MODES)}")


def adjust(summary: pd.DataFrame, mode: str = "holm") -> str:
    """Set ``summary["p_vs_reference"]`` from ``p_raw`` (Holm-adjusted over the table, or raw);
    returns the note saying which."""
    check_mode(mode)
    n = int(summary["p_raw"].notna().sum())
    summary["p_vs_reference"] = holm(summary["p_raw"]) if mode == "holm" else summary["p_raw"].to_numpy(float)
    return (NOTE_HOLM if mode == "holm" else NOTE_RAW).format(n=n)


def detectable_note(runs: pd.DataFrame) -> str:
    """Per task: the smallest test-accuracy difference a two-sided Welch/t comparison of two
    configurations detects with 80% power at alpha .05 (unadjusted), at the task's typical seed
    count and its pooled within-configuration standard deviation."""
    parts = []
    for task, group in runs.groupby("task", sort=True):
        by = group.groupby(["learner", "config"])["test_acc"]
        counts, variances = by.count(), by.var(ddof=1)
        usable = counts[(counts >= 2) & variances.notna()].index
        if not len(usable):
            parts.append(f"{task} n/a (fewer than 2 seeds)")
            continue
        dof = (counts[usable] - 1).sum()
        sd = math.sqrt(float(((counts[usable] - 1) * variances[usable]).sum()) / dof)
        n = int(np.median(counts[usable]))
        parts.append(f"{task} {min_detectable_difference(sd, n):.3f} (n = {n}, sd {sd:.3f})")
    return (
        f"Minimum detectable difference in test accuracy ({POWER:.0%} power, two-sided alpha {ALPHA:g} "
        f"unadjusted, pooled seed spread; statsmodels TTestIndPower): {'; '.join(parts)}. "
        "A smaller true difference is likely to read as not significant."
    )


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
