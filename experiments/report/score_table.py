"""``bpbench table DIR --score``: one row per learner label with its across-task scores.

Columns: the tasks it ran, the area under its performance profile (time to target in FLOPs by
default; seconds, epochs or samples selectable), tasks on which most seeds reached the target,
average rank by final test accuracy and by time to target (over the tasks every ranked learner
ran), and the interquartile mean of normalized accuracy with its stratified bootstrap 95%
interval. The notes give the Friedman tests, the targets and every definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpbench.experiments.plan.time_to_target import time_to_target
from bpbench.experiments.report import ranking
from bpbench.experiments.report.render import format_table, plain
from bpbench.experiments.report.scoring import TTT_COLUMNS, with_time_to_target
from bpbench.experiments.report.summary import References, main_reference, reference_of
from bpbench.experiments.store.run_table import RunTable

NOTE_SCORE = (
    "Each learner label at its configuration with the highest median final validation accuracy per task. "
    "Profile area: the area under the learner's performance profile (Dolan & More 2002, as in AlgoPerf): the "
    "fraction of tasks on which its median {measure} to target is within tau x the fastest learner's, for tau "
    "from 1 to {cap:g}, over {cap_1:g} (1: fastest everywhere; a task not reached, or not run, counts as never "
    "within tau). Reached: tasks on which more than half of its seeds reached the target. Rank acc / rank time: "
    "average rank over tasks (1 = best; ties averaged) by mean test accuracy and by median {measure} to target, "
    "over the tasks every ranked learner ran. IQM norm. acc: interquartile mean over tasks and seeds of (test "
    "acc - chance) / ({reference}'s mean test acc - chance), chance = the test split's majority-class share; "
    "[95% percentile interval of a hierarchical bootstrap: tasks resampled, then seeds within each task, "
    f"{ranking.BOOTSTRAP_RESAMPLES} resamples]."
)


def _friedman_note(name: str, matrix: pd.DataFrame, stat: float, p: float) -> str:
    if math.isnan(stat):
        return (
            f"Friedman test ({name}): n/a ({matrix.shape[1]} learner(s) on {matrix.shape[0]} common task(s); "
            "needs at least 3 learners and 2 tasks)."
        )
    return (
        f"Friedman test ({name}; scipy friedmanchisquare over {matrix.shape[0]} tasks, "
        f"{matrix.shape[1]} learners): chi2 = {stat:.3g}, p = {p:.2g}; pairwise: Nemenyi post-hoc "
        "(critical-difference diagram of bpbench plot, drawn only when Friedman rejects at .05)."
    )


@dataclass(frozen=True)
class ScoreTable:
    """The score table: ``rows`` (one per learner label: tasks, profile_area, reached, targets, rank_acc,
    rank_time, iqm, iqm_low, iqm_high), its ``notes`` and the time-to-target ``measure`` it ranks by."""

    rows: pd.DataFrame
    notes: tuple[str, ...] = ()
    measure: str = "flops"
    friedman: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # ranking -> chi2, p, tasks

    @property
    def empty(self) -> bool:
        return self.rows.empty


def score_runs(
    runs: pd.DataFrame, reference: str, measure: str = "flops", target_note: str = "", cap: float = ranking.PROFILE_CAP
) -> ScoreTable:
    """The score table of ``runs`` (rows of ``RunTable.runs`` with time-to-target columns)."""
    if runs.empty:
        return ScoreTable(pd.DataFrame(), measure=measure)
    elapsed = ranking.times(runs, measure)
    accuracy = ranking.accuracy_matrix(runs)
    ranked_acc = ranking.complete(accuracy)
    timed = elapsed.dropna(how="all")  # the tasks with a target; NaN left: a learner that did not run a task
    ranked_time = ranking.complete(timed)
    ranked_time = ranked_time[[c for c in ranked_acc.columns if c in ranked_time]]
    scores, why = ranking.iqm_scores(runs, reference)
    area = ranking.profile_area(elapsed, cap) if not timed.empty else pd.Series(dtype=float)
    rank_acc = ranking.average_ranks(ranked_acc, higher_is_better=True)
    rank_time = ranking.average_ranks(ranked_time, higher_is_better=False) if not ranked_time.empty else pd.Series()
    rank_ci = ranking.rank_intervals(runs[runs["task"].isin(ranked_acc.index)], list(ranked_acc.columns))
    learners = list(accuracy.columns)
    out = pd.DataFrame(
        {
            "learner": learners,
            "tasks": [int(accuracy[c].notna().sum()) for c in learners],
            "profile_area": [float(area.get(c, math.nan)) for c in learners],
            "reached": [int(np.isfinite(elapsed[c]).sum()) if c in elapsed else 0 for c in learners],
            "targets": [int(elapsed[c].notna().sum()) if c in elapsed else 0 for c in learners],
            "rank_acc": [float(rank_acc.get(c, math.nan)) for c in learners],
            "rank_acc_low": [float(rank_ci["low"].get(c, math.nan)) for c in learners],
            "rank_acc_high": [float(rank_ci["high"].get(c, math.nan)) for c in learners],
            "rank_time": [float(rank_time.get(c, math.nan)) for c in learners],
            "iqm": [float(scores["iqm"].get(c, math.nan)) for c in learners],
            "iqm_low": [float(scores["low"].get(c, math.nan)) for c in learners],
            "iqm_high": [float(scores["high"].get(c, math.nan)) for c in learners],
        }
    ).sort_values(["rank_acc", "learner"], kind="stable", ignore_index=True)
    friedman = {"test_acc": ranking.friedman(ranked_acc), "time_to_target": ranking.friedman(ranked_time)}
    notes = [
        NOTE_SCORE.format(measure=time_to_target(measure).words, cap=cap, cap_1=cap - 1, reference=reference),
        _friedman_note("test accuracy", ranked_acc, *friedman["test_acc"]),
        ranking.ranking_note(ranked_acc),
        _friedman_note(f"{time_to_target(measure).words} to target", ranked_time, *friedman["time_to_target"]),
    ]
    notes += [why] if why else []
    notes += [target_note] if target_note else []
    tests = {
        "test_acc": {"chi2": friedman["test_acc"][0], "p": friedman["test_acc"][1], "tasks": len(ranked_acc)},
        "time_to_target": {
            "chi2": friedman["time_to_target"][0],
            "p": friedman["time_to_target"][1],
            "tasks": len(ranked_time),
        },
    }
    return ScoreTable(out, tuple(notes), measure, tests)


def score(table: RunTable, reference: References | None = None, measure: str = "flops") -> ScoreTable:
    """``score_runs`` of the verdict runs of ``table`` (a tuned study: its final runs only)."""
    time_to_target(measure)  # a ValueError naming the allowed measures, before any work
    verdict = table.verdict()
    ref = main_reference(reference or reference_of(table.store))
    runs, note = with_time_to_target(verdict, verdict.runs, ref)
    return score_runs(runs, ref, measure, note)


def run_times(table: RunTable, reference: References | None = None) -> pd.DataFrame:
    """Per run of ``table``: run_id, target, reached and each time to target (``TTT_COLUMNS``); targets
    from the verdict runs (the reference's final runs in a tuned study)."""
    columns = ["run_id", "target", "reached", *TTT_COLUMNS]
    if table.runs.empty:
        return pd.DataFrame(columns=columns)
    ref = main_reference(reference or reference_of(table.store))
    targets_from = table.verdict().runs
    runs, _ = with_time_to_target(table, table.runs, ref, targets_from)
    return runs[columns]


def _num(value: float, fmt: str) -> str:
    return "n/a" if math.isnan(value) else f"{value:{fmt}}"


def display_score(scores: ScoreTable) -> pd.DataFrame:
    """The score table as strings."""
    frame, measure = scores.rows, scores.measure
    return pd.DataFrame(
        {
            "learner": frame["learner"],
            "tasks": frame["tasks"].astype(str),
            f"profile area ({measure})": [_num(v, ".3f") for v in frame["profile_area"]],
            "reached": [f"{r}/{t}" if t else "n/a" for r, t in zip(frame["reached"], frame["targets"])],
            "rank acc [95% CI]": [
                _num(v, ".2f") + ("" if math.isnan(lo) else f" [{lo:.1f}, {hi:.1f}]")
                for v, lo, hi in zip(frame["rank_acc"], frame["rank_acc_low"], frame["rank_acc_high"])
            ],
            f"rank time ({measure})": [_num(v, ".2f") for v in frame["rank_time"]],
            "IQM norm. acc [95% CI]": [
                "n/a" if math.isnan(m) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
                for m, lo, hi in zip(frame["iqm"], frame["iqm_low"], frame["iqm_high"])
            ],
        }
    )


def render_score(scores: ScoreTable, fmt: str) -> str:
    """The score table as text | markdown | latex | html | csv (csv: the numbers), by the summary's
    renderer (``render.format_table``)."""
    if (text := plain(scores.rows, fmt)) is not None:
        return text
    return format_table(display_score(scores), list(scores.notes), fmt, "scores")
