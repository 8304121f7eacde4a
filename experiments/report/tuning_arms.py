"""The default-vs-tuned arm of a tuned study (``[tuning] compare_default``): each learner's hand-picked
configuration on the same final seeds, summarized like the tuned rows, and what tuning changed.

- ``default_summary(runs, reference, p_adjust)``: the hand-picked runs' rows (a learner without a
  search space counts its final runs: they are its hand-picked configuration), config labelled
  ``hand-picked``, p against the reference's hand-picked runs (Holm over these rows only).
- ``verdict(row)``: the summary's verdict (better | worse | equivalent ±m | inconclusive | ref | n/a).
- ``gain_cells(tuned, default)``: per tuned row "+0.012 (inconclusive -> worse)".
"""

from __future__ import annotations

import math

import pandas as pd

from bpbench.experiments.report.summary import References, summarize_runs

ALPHA = 0.05
HAND_PICKED = "hand-picked"


def default_summary(runs: pd.DataFrame, reference: References, p_adjust: str) -> pd.DataFrame:
    """Summary rows of the hand-picked arm (empty when the study has none)."""
    if runs.empty:
        return pd.DataFrame()
    runs = runs.assign(config=HAND_PICKED)
    return summarize_runs(runs, None, reference, p_adjust, tuned=True).rows


def verdict(row: pd.Series) -> str:
    """The row's verdict against its reference as the summary sets it (``report/verdicts.py``: better,
    worse, equivalent ±m, inconclusive; ref; n/a), without an inconclusive row's seeds-to-decide advice."""
    return str(row.get("verdict", "n/a")).split(":")[0]


def gains(tuned: pd.DataFrame, default: pd.DataFrame) -> list[float]:
    """Per tuned row: tuned minus hand-picked mean test accuracy (NaN without hand-picked runs)."""
    by_key = {(r["learner"], r["task"]): r["test_acc_mean"] for _, r in default.iterrows()}
    return [row["test_acc_mean"] - by_key.get((row["learner"], row["task"]), math.nan) for _, row in tuned.iterrows()]


def gain_cells(tuned: pd.DataFrame, default: pd.DataFrame) -> list[str]:
    """Per tuned row: tuned minus hand-picked mean test accuracy and the verdict before -> after."""
    if default.empty:
        return ["n/a"] * len(tuned)
    by_key = {(r["learner"], r["task"]): r for _, r in default.iterrows()}
    cells = []
    for _, row in tuned.iterrows():
        base = by_key.get((row["learner"], row["task"]))
        if base is None:
            cells.append("n/a: no hand-picked runs")
            continue
        gain = row["test_acc_mean"] - base["test_acc_mean"]
        before, after = verdict(base), verdict(row)
        change = f"{before} -> {after}" if before != after else f"{after}, unchanged"
        cells.append(f"{gain:+.3f} ({change})")
    return cells


NOTE_ARMS = (
    "Hand-picked rows: each learner's configuration as the study writes it (no search), trained at the "
    "same budget on the same final seeds as the tuned rows; p against the reference's hand-picked runs, "
    "Holm-adjusted over the hand-picked rows. Tuning gain: tuned minus hand-picked mean test accuracy, "
    "and the verdict against the reference (better / worse / equivalent / inconclusive, as in the verdict "
    "column) hand-picked -> tuned."
)

__all__ = ["HAND_PICKED", "NOTE_ARMS", "default_summary", "gain_cells", "verdict"]
