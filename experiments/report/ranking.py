"""Across-task verdicts: performance profiles, average ranks with Friedman and Nemenyi tests, and
the interquartile mean of normalized accuracy with stratified bootstrap intervals.

Every learner label is scored at one configuration per task: the one with the highest median
final *validation* accuracy (test accuracy plays no part in the choice). Inputs are the per-run
rows of ``RunTable.runs`` with the time-to-target columns of ``scoring.with_time_to_target``.

- ``times(runs, measure)``: task x learner median time to target (a seed that never reached it
  is infinite, so the median is infinite when at most half of the seeds reached it).
- ``performance_profile(times, taus)`` (Dolan & More 2002, as AlgoPerf uses it): per learner,
  the fraction of tasks whose time is within tau x the best learner's on that task;
  ``profile_area(times, cap)``: its area over tau in [1, cap], divided by cap - 1 (1: fastest on
  every task; 0: never within cap x the fastest).
- ``average_ranks(matrix, higher_is_better)``: rank per task (1 = best, ties averaged), mean over
  tasks; ``friedman(matrix)``: scipy's ``friedmanchisquare``; ``nemenyi(matrix)``:
  scikit-posthocs' ``posthoc_nemenyi_friedman`` p-values.
- ``iqm_scores(runs, reference)``: per learner the interquartile mean over tasks and seeds of
  (test acc - chance) / (reference's mean test acc - chance), chance being the test split's
  majority-class share (the run summary's ``chance_accuracy``), with a 95% percentile interval
  from a hierarchical bootstrap (``hierarchical_iqm``: tasks resampled, then seeds within each).
- ``rank_intervals(runs, learners)``: the 95% interval of each learner's average rank under the
  same hierarchical bootstrap.
- ``draws_cd(matrix)``: whether a critical-difference diagram is warranted (Friedman rejects at
  alpha .05), with the reason when it is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats

from bpbench.experiments.plan.time_to_target import time_to_target
from bpbench.experiments.report.scoring import median_time

PROFILE_CAP = 4.0  # AlgoPerf's tau_max
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
IQM_TRIM = 0.25


def best_configs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of each learner x task's configuration with the highest median final validation
    accuracy (ties and missing validation accuracy: the first configuration in label order)."""
    # as_index=False: a DataFrame (pandas-stubs types it as a Series)
    medians = cast(pd.DataFrame, runs.groupby(["learner", "task", "config"], as_index=False)["val_acc"].median())
    medians = medians.sort_values(["learner", "task", "config"], kind="stable")
    best = medians.loc[medians.fillna({"val_acc": -math.inf}).groupby(["learner", "task"])["val_acc"].idxmax()]
    return runs.merge(best[["learner", "task", "config"]], on=["learner", "task", "config"])


def times(runs: pd.DataFrame, measure: str = "flops") -> pd.DataFrame:
    """Task x learner median time to target in ``measure`` (inf: not reached by most seeds;
    NaN: the task has no target)."""
    column = time_to_target(measure).column  # a ValueError naming the allowed measures
    best = best_configs(runs)
    rows = {}
    for (task, learner), group in best.groupby(["task", "learner"], sort=True):
        measured = group[group["target"].notna()] if "target" in group else group.iloc[:0]
        rows[(task, learner)] = median_time(measured[column]) if len(measured) else math.nan
    if not rows:
        return pd.DataFrame()
    series = pd.Series(rows, dtype=float)
    series.index = series.index.set_names(["task", "learner"])
    return series.unstack("learner")


def _ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Each time over its task's best (inf where the learner, or every learner, never reached it)."""
    usable = times.dropna(how="all")
    best = usable.min(axis=1)
    ratios = usable.div(best.where(np.isfinite(best) & (best > 0)), axis=0)
    zero = best == 0  # reached at the first evaluation: ratio 1 for those at 0, inf for the rest
    ratios.loc[zero] = np.where(usable.loc[zero] == 0, 1.0, math.inf)
    return ratios.fillna(math.inf)


def performance_profile(times: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """tau x learner: the fraction of tasks (with a target) on which the learner's time is at
    most tau x the best learner's on that task."""
    ratios = _ratios(times)
    return pd.DataFrame(
        {learner: [(ratios[learner] <= tau).mean() for tau in taus] for learner in ratios},
        index=pd.Index(list(taus), name="tau"),
    )


def profile_area(times: pd.DataFrame, cap: float = PROFILE_CAP) -> pd.Series:
    """Learner -> area under its performance profile over tau in [1, cap], over cap - 1."""
    if cap <= 1.0:
        raise ValueError(f"cap = {cap}: must be > 1")
    ratios = _ratios(times)
    share = ((cap - ratios.clip(lower=1.0)).clip(lower=0.0) / (cap - 1.0)).fillna(0.0)
    return share.mean(axis=0)


def average_ranks(matrix: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    """Learner -> mean over tasks (rows) of its rank on the task (1 = best, ties averaged)."""
    ranks = matrix.rank(axis=1, ascending=not higher_is_better, method="average")
    return ranks.mean(axis=0).sort_values()


def complete(matrix: pd.DataFrame) -> pd.DataFrame:
    """The learners (columns) with a value on every task (row)."""
    return matrix.dropna(axis=1, how="any")


def friedman(matrix: pd.DataFrame) -> tuple[float, float]:
    """(statistic, p) of scipy's Friedman test over tasks (blocks) of the learners (columns);
    NaN when fewer than 3 learners or 2 tasks."""
    if matrix.shape[1] < 3 or matrix.shape[0] < 2:
        return math.nan, math.nan
    result = stats.friedmanchisquare(*(matrix[c].to_numpy(float) for c in matrix.columns))
    return float(result.statistic), float(result.pvalue)


CD_ALPHA = 0.05


def draws_cd(matrix: pd.DataFrame) -> tuple[bool, str]:
    """(draw it, why not): a Nemenyi critical-difference diagram only follows a Friedman test that
    rejects at ``CD_ALPHA`` (Demsar 2006); otherwise the post-hoc bars would read as findings."""
    stat, p = friedman(matrix)
    if math.isnan(stat):
        return False, (
            f"no critical-difference diagram: {matrix.shape[1]} learner(s) on {matrix.shape[0]} common task(s); "
            "Friedman's test needs at least 3 learners run on the same 2 or more tasks"
        )
    if not p < CD_ALPHA:
        return False, (
            f"no critical-difference diagram: Friedman's test over {matrix.shape[0]} tasks does not reject "
            f"(p = {p:.2g} >= {CD_ALPHA:g}), so no pairwise rank difference is supported"
        )
    return True, ""


def ranking_note(matrix: pd.DataFrame) -> str:
    """How many tasks the ranking by test accuracy rests on, how its interval is drawn, and whether a
    critical-difference diagram is warranted."""
    drawn, why_not = draws_cd(matrix)
    return (
        f"The ranking by test accuracy rests on {matrix.shape[0]} task(s) that all {matrix.shape[1]} ranked "
        f"learners ran; rank acc [95% CI]: percentile interval over {BOOTSTRAP_RESAMPLES} hierarchical bootstrap "
        "resamples (tasks resampled, then seeds within each task). "
        + (
            "Critical-difference diagram: drawn (Friedman rejects)."
            if drawn
            else why_not[0].upper() + why_not[1:] + "."
        )
    )


def nemenyi(matrix: pd.DataFrame) -> pd.DataFrame:
    """Learner x learner p-values of the Nemenyi post-hoc test after Friedman (scikit-posthocs)."""
    return (
        sp.posthoc_nemenyi_friedman(matrix.to_numpy(float))
        .set_axis(matrix.columns, axis=0)
        .set_axis(matrix.columns, axis=1)
    )


def accuracy_matrix(runs: pd.DataFrame) -> pd.DataFrame:
    """Task x learner mean final test accuracy at each learner's best configuration."""
    return best_configs(runs).groupby(["task", "learner"])["test_acc"].mean().unstack("learner")


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half (scipy's trim_mean, 25% off each end)."""
    return float(stats.trim_mean(values, IQM_TRIM))


def _resampled_tasks(n_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """(BOOTSTRAP_RESAMPLES, n_tasks) task indices drawn with replacement: the top level of the
    hierarchical bootstrap (the tasks are a sample of the tasks one could have run)."""
    return rng.integers(0, n_tasks, size=(BOOTSTRAP_RESAMPLES, n_tasks))


def _resampled_means(values: list[np.ndarray], tasks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(resamples, task draws): the mean of the seeds of each drawn task, the seeds resampled
    with replacement for every draw (the bootstrap's second level)."""
    out = np.empty(tasks.shape)
    for t, seeds in enumerate(values):
        where = tasks == t
        picks = rng.integers(0, seeds.size, size=(int(where.sum()), seeds.size))
        out[where] = seeds[picks].mean(axis=1)
    return out


def rank_intervals(runs: pd.DataFrame, learners: Sequence[str], confidence: float = 0.95) -> pd.DataFrame:
    """Learner -> low, high: the ``confidence`` percentile interval of its average rank by mean test
    accuracy (1 = best) over a hierarchical bootstrap: tasks resampled, then each learner's seeds
    within each drawn task (``learners``: those ranked, every one with runs on every task)."""
    best = best_configs(runs)
    tasks = sorted(best["task"].unique())
    if not learners or not tasks:
        return pd.DataFrame(columns=["low", "high"])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    drawn = _resampled_tasks(len(tasks), rng)
    accs = best.groupby(["learner", "task"])["test_acc"]
    means = np.stack(
        [_resampled_means([accs.get_group((lr, t)).to_numpy(float) for t in tasks], drawn, rng) for lr in learners],
        axis=-1,
    )  # (resamples, task draws, learners)
    ranks = stats.rankdata(-means, axis=-1).mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ranks, [tail, 100 - tail], axis=0)
    return pd.DataFrame({"low": low, "high": high}, index=pd.Index(list(learners), name="learner"))


def hierarchical_iqm(
    strata: list[np.ndarray], rng: np.random.Generator, confidence: float = 0.95
) -> tuple[float, float]:
    """The ``confidence`` percentile interval of the IQM of the scores in ``strata`` (one array per
    task): tasks resampled with replacement, then runs within each drawn task."""
    drawn = _resampled_tasks(len(strata), rng)
    sizes = {s.size for s in strata}
    if len(sizes) == 1:  # the usual case (every task ran the same seeds): one array operation
        (n,) = sizes
        picks = rng.integers(0, n, size=(*drawn.shape, n))
        boot = stats.trim_mean(np.stack(strata)[drawn[..., None], picks].reshape(len(drawn), -1), IQM_TRIM, axis=1)
    else:
        boot = np.array(
            [
                stats.trim_mean(
                    np.concatenate([strata[t][rng.integers(0, strata[t].size, strata[t].size)] for t in row]), IQM_TRIM
                )
                for row in drawn
            ]
        )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float(low), float(high)


def iqm_scores(runs: pd.DataFrame, reference: str) -> tuple[pd.DataFrame, str]:
    """(learner -> iqm, low, high, tasks; the reason scores are n/a, or ""): see the module doc."""
    best = best_configs(runs)
    if "chance" not in best or best["chance"].isna().any():
        return pd.DataFrame(columns=["iqm", "low", "high", "tasks"]), (
            "normalized accuracy n/a: some runs do not record chance_accuracy (stored before it existed)"
        )
    ref = best[best["learner"] == reference].groupby("task")["test_acc"].mean()
    chance = best.groupby("task")["chance"].first()
    scale = ref - chance.reindex(ref.index)
    scale = scale[scale > 0]
    if scale.empty:
        return pd.DataFrame(columns=["iqm", "low", "high", "tasks"]), (
            f"normalized accuracy n/a: {reference} is not above chance on any task"
        )
    best = best[best["task"].isin(scale.index)]
    best = best.assign(score=(best["test_acc"] - best["task"].map(chance)) / best["task"].map(scale))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rows = {}
    for learner, group in best.groupby("learner", sort=True):
        strata = [g["score"].to_numpy(float) for _, g in group.groupby("task", sort=True)]
        low, high = hierarchical_iqm(strata, rng)
        rows[learner] = {
            "iqm": iqm(np.concatenate(strata)),
            "low": float(low),
            "high": float(high),
            "tasks": len(strata),
        }
    return pd.DataFrame.from_dict(rows, orient="index"), ""
