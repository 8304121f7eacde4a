"""Verdicts of a table's comparisons: better, worse, equivalent within ±m, or inconclusive.

Each row compared with its reference has Welch's p (a difference) and the TOST p
(``stats.tost_p``: the difference lies within ±margin), each Holm-adjusted over the table's
family of k comparisons (statsmodels ``multipletests``; raw with ``--p raw``). The verdict:

- *better* / *worse*: the adjusted Welch p < alpha (the sign of the difference says which);
- *equivalent within ±m*: otherwise, the adjusted TOST p < alpha;
- *inconclusive*: neither; the cell says how many seeds would decide it (``power.seeds_to_decide``
  at Holm's first-step level alpha / k, with the row's own difference and spread).

The difference interval is at the family-wise level of the test: Bonferroni 1 - alpha/k
(simultaneous over the k rows; an interval excluding 0 implies Holm p < alpha, never the
reverse), within [-1, 1]. ``apply(summary, p_adjust, margin)`` sets the columns
``p_vs_reference``, ``tost_p``, ``diff_low``/``diff_high``, ``verdict`` and ``seeds_to_decide``
of a summary (rows of ``pairwise.compare``) and returns the note saying all this.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpbench.experiments.report.power import MAX_SEEDS, family_alpha, seeds_to_decide
from bpbench.experiments.report.stats import ALPHA, diff_interval, holm

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"


def label(p_diff: float, p_equiv: float, diff: float, margin: float, alpha: float = ALPHA) -> str:
    """The verdict of one comparison from its (adjusted) Welch and TOST p; "n/a" when undefined."""
    if math.isnan(p_diff):
        return "n/a"
    if p_diff < alpha:
        return BETTER if diff > 0 else WORSE
    if not math.isnan(p_equiv) and p_equiv < alpha:
        return f"{EQUIVALENT} ±{margin:g}"
    return INCONCLUSIVE


def _cell(verdict: str, seeds: float) -> str:
    if verdict != INCONCLUSIVE:
        return verdict
    if math.isnan(seeds):
        return f"{INCONCLUSIVE}: over {MAX_SEEDS} seeds to decide"
    return f"{INCONCLUSIVE}: run {int(seeds)} seeds to decide"


def apply(summary: pd.DataFrame, p_adjust: str, margin: float) -> str:
    """Adjust the p columns, set the family-level intervals and the verdicts of ``summary`` in
    place (see the module doc); returns the note."""
    holm_mode = p_adjust == "holm"
    present = summary["p_raw"].notna()
    k = int(present.sum())
    adjust = holm if holm_mode else (lambda p: np.asarray(p, dtype=float))
    summary["p_vs_reference"] = adjust(summary["p_raw"])
    summary["tost_p"] = adjust(summary["tost_p_raw"].where(present))
    alpha_k = family_alpha(k) if holm_mode else ALPHA
    level = 1.0 - alpha_k if holm_mode else 1.0 - ALPHA
    bounds = [
        diff_interval(d, se, df, level)
        for d, se, df in zip(summary["diff_mean"], summary["diff_se"], summary["diff_df"])
    ]
    summary["diff_low"] = [b[0] for b in bounds]
    summary["diff_high"] = [b[1] for b in bounds]
    verdicts, seeds = [], []
    rows = zip(summary["p_vs_reference"], summary["tost_p"], summary["diff_mean"], summary["diff_sd"], summary["seeds"])
    for p, q, d, sd, n in rows:
        verdict = label(p, q, d, margin)
        need = seeds_to_decide(d, sd, margin, alpha_k) if verdict == INCONCLUSIVE else None
        # the power estimate pools the two spreads; where Welch's test (unequal spreads, few df) did not decide
        # at n seeds, n is not enough whatever the estimate says: never advise fewer seeds than were run
        need = None if need is None else max(need, int(n) + 1)
        seeds.append(math.nan if need is None else float(need))
        verdicts.append(_cell(verdict, seeds[-1]))
    summary["verdict"] = [v if r != "ref" else "ref" for v, r in zip(verdicts, summary["reference"])]
    summary["seeds_to_decide"] = seeds
    return note(k, margin, holm_mode, level)


def note(k: int, margin: float, holm_mode: bool, level: float) -> str:
    """What the verdict column and the difference interval mean, for a family of ``k`` comparisons."""
    correction = (
        f"both Holm-adjusted over the {k} comparisons of this table (statsmodels multipletests; raw with --p raw)"
        if holm_mode
        else f"both raw, not adjusted for the {k} comparisons of this table (Holm is the default)"
    )
    interval = (
        f"its {level:.2%} Welch interval (Bonferroni level 1 - {ALPHA:g}/{k}, simultaneous over the family: "
        "an interval excluding 0 implies Holm p < .05, not the reverse)"
        if holm_mode
        else f"its {level:.0%} Welch interval (unadjusted)"
    )
    return (
        f"Verdict at margin ±{margin:g} in test accuracy (the study's [verdict] margin; default 0.01): Welch's "
        f"t-test for a difference and TOST (two one-sided Welch tests, statsmodels ttost_ind) for equivalence "
        f"within ±{margin:g}, {correction}, at alpha {ALPHA:g}: better / worse when Welch's p < {ALPHA:g}, else "
        f"equivalent when TOST's p < {ALPHA:g}, else inconclusive, with the seeds a side that would decide it at "
        f"80% power if the observed difference and spread held. Diff: mean test accuracy minus the reference's, "
        f"with {interval}, within [-1, 1]. In LaTeX: equiv. = equivalent within ±{margin:g}; inconcl. (N): "
        "N seeds a side would decide it."
    )


def short(verdict: str) -> str:
    """A verdict cell in a page-wide LaTeX column: 'equiv.' (the margin is in the note),
    'inconcl. (12)' (12 seeds a side would decide it)."""
    if verdict.startswith(EQUIVALENT):
        return "equiv."
    if verdict.startswith(INCONCLUSIVE):
        need = verdict.split("run ")[-1].split(" seeds")[0] if "run " in verdict else f">{MAX_SEEDS}"
        return f"inconcl. ({need})"
    return verdict
