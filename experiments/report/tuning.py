"""What a tuned study's results folder shows: every trial, the final-run table, robustness, EVP.

- ``trials(table)``: one row per tuning trial of a run table (``RunTable.trial_runs``): learner,
  task, trial, config, option values, the validation score it was selected by, test accuracy for
  the record, rank within its learner x task, whether it was chosen.
- ``tuned_summary(table)``: the summary of the final runs only (``RunTable.verdict``; one row per
  learner x task: chosen configuration, mean ± CI over the final seeds, p against the reference's final runs), with
  the number of trials, the sampler and the tuning robustness added.
- ``robustness``: fraction of a learner's trials within ``ROBUST_WITHIN`` (one point of accuracy)
  of its best validation score.
- ``expected_max(scores, n)``: expected validation performance (Dodge et al. 2019) and its variance.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any, cast

import numpy as np
import pandas as pd

from bpbench.experiments.report.scoring import with_time_to_target
from bpbench.experiments.report.summary import ALWAYS, TTT_KEY, References, Summary, main_reference, summarize_runs
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from bpbench.experiments.store.selection import test_at_best_val, val_score

ROBUST_WITHIN = 0.01  # one point of accuracy
TRIAL_COLUMNS = [
    "learner",
    "task",
    "trial",
    "run_id",
    "status",
    "config",
    "options",
    "val_score",
    "test_acc",
    "rank",
    "chosen",
]


def expected_max(scores: list[float] | np.ndarray, n: int) -> tuple[float, float]:
    """(mean, variance) of the best of ``n`` draws with replacement from ``scores`` (Dodge et al. 2019):
    sorted ascending v(1..N), E = sum_i v(i) [(i/N)^n - ((i-1)/N)^n]."""
    v = np.sort(np.asarray(scores, dtype=float))
    if v.size == 0 or np.isnan(v).any() or n < 1:
        raise ValueError(f"expected_max needs finite scores and n >= 1 (got {v.size} score(s), n = {n})")
    i = np.arange(1, v.size + 1)
    weights = (i / v.size) ** n - ((i - 1) / v.size) ** n
    mean = float(weights @ v)
    return mean, max(0.0, float(weights @ v**2) - mean**2)


def evp_curve(scores: list[float]) -> pd.DataFrame:
    """n = 1..N, expected best validation score and its standard deviation."""
    rows = [(n, *expected_max(scores, n)) for n in range(1, len(scores) + 1)]
    out = pd.DataFrame(rows, columns=["n", "evp", "var"])
    out["sd"] = np.sqrt(out["var"])
    return out


def select_mode(store: RunStore) -> str:
    """The ``tuning.select`` of the folder's tuned study (default val_accuracy)."""
    for study in store.studies():
        block = study.get("study", {}).get("tuning")
        if isinstance(block, dict):
            return str(block.get("select", "val_accuracy"))
    return "val_accuracy"


def trials(table: RunTable) -> pd.DataFrame:
    """One row per tuning trial of the run table (empty frame with ``TRIAL_COLUMNS`` when there is none)."""
    mine = table.trial_runs()
    select = select_mode(table.store)
    chosen = {(r.learner, r.task): table.details[r.run_id]["trial"] for r in table.select(("final",)).runs.itertuples()}
    rows = [_trial_row(table, r, select) for r in mine.runs.itertuples()]
    rows += [_trial_row(table, r, select) for r in mine.failed.itertuples()]
    if not rows:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    out = pd.DataFrame(rows).sort_values(["task", "learner", "trial"], ignore_index=True)
    out["rank"] = out.groupby(["learner", "task"])["val_score"].rank(ascending=False, method="min")
    out["chosen"] = [chosen.get(cast(tuple[str, str], (r.learner, r.task))) == r.trial for r in out.itertuples()]
    return out[TRIAL_COLUMNS]


def _trial_row(table: RunTable, run: Any, select: str) -> dict[str, Any]:
    """A trial's row: a completed run of ``table.runs`` (its test accuracy reported only) or a failed one."""
    ok = hasattr(run, "test_acc")
    score = val_score(table.store, run.run_id, select) if ok else None
    return {
        "learner": run.learner,
        "task": run.task,
        "trial": table.details[run.run_id]["trial"],
        "run_id": run.run_id,
        "status": "ok" if ok else "failed",
        "config": run.config,
        "options": table.details[run.run_id]["options"],
        "val_score": math.nan if score is None else score,
        "test_acc": run.test_acc if ok else math.nan,
    }


def robustness(table: pd.DataFrame) -> pd.Series:
    """(learner, task) -> fraction of its trials (failed ones count) within one point of its best."""

    def fraction(group: pd.DataFrame) -> float:
        best = group["val_score"].max()
        return math.nan if math.isnan(best) else float((group["val_score"] >= best - ROBUST_WITHIN).sum() / len(group))

    if table.empty:
        return pd.Series(dtype=float)
    return table.groupby(["learner", "task"])[["val_score"]].apply(fraction)


def tuned_summary(table: RunTable, reference: References, p_adjust: str = "holm") -> Summary:
    """The summary of the final runs (``RunTable.verdict``) with their time to target, and trials,
    sampler and robustness per learner x task (from the trials, ``trials``)."""
    verdict = table.verdict()
    runs = verdict.runs
    if runs.empty:
        return Summary(pd.DataFrame(), p_adjust=p_adjust, tuned=True)
    if select_mode(table.store) == "best_val_accuracy":  # a final run reports the epoch it would be stopped at
        runs = runs.assign(test_acc=[test_at_best_val(table.store, r) for r in runs["run_id"]])
    runs, ttt_note = with_time_to_target(verdict, runs, main_reference(reference))
    # failed tuning trials are counted in the trial table, not here
    notes = ((TTT_KEY, ttt_note),) if ttt_note else ()
    summary = summarize_runs(runs, verdict.failed, reference, p_adjust, notes, tuned=True)
    if summary.empty:
        return summary
    tried = trials(table)
    counts = tried.groupby(["learner", "task"]).size() if not tried.empty else pd.Series(dtype=int)
    robust = robustness(tried)
    samplers = {(r.learner, r.task): table.details[r.run_id]["sampler"] for r in verdict.runs.itertuples()}
    rows = summary.rows.copy()
    keys = list(zip(rows["learner"], rows["task"]))
    rows["trials"] = [int(counts.get(k, 0)) for k in keys]
    rows["sampler"] = [samplers.get(k) or "?" for k in keys]
    rows["robustness"] = [float(robust.get(k, math.nan)) for k in keys]
    return replace(summary, rows=rows).with_notes(*NOTES_TUNED)


NOTES_TUNED = (  # (column key, sentence) of the summary's first note
    (
        ALWAYS,
        "Tuned: each row is the configuration with the best validation accuracy among its learner's trials "
        "(the test split plays no part), retrained on fresh seeds.",
    ),
    (
        "trials",
        "Trials: configurations tried per learner x task (sampler none: no search space, its one configuration).",
    ),
    ("robust", "Robust: fraction of trials within one point of the best validation accuracy."),
)


def render_trials(table: pd.DataFrame, fmt: str) -> str:
    """Every trial: learner, task, trial, configuration, validation score, rank, chosen."""
    if table.empty:
        return "no tuning trials"
    shown = table[["learner", "task", "trial", "config", "status", "val_score", "rank", "chosen"]].copy()
    shown["val_score"] = shown["val_score"].map(lambda v: "n/a" if math.isnan(v) else f"{v:.4f}")
    shown["rank"] = shown["rank"].map(lambda v: "n/a" if math.isnan(v) else str(int(v)))
    shown["chosen"] = shown["chosen"].map(lambda c: "*" if c else "")
    if fmt == "csv":
        return table.assign(options=table["options"].map(json.dumps)).to_csv(index=False)
    if fmt == "markdown":
        return shown.to_markdown(index=False)
    if fmt == "html":
        return shown.to_html(index=False, classes="results", border=0)
    if fmt == "latex":
        from bpbench.experiments.report.render import to_latex

        return to_latex(shown.astype(str), [])
    return shown.to_markdown(index=False, tablefmt="simple")


__all__ = ["evp_curve", "expected_max", "render_trials", "robustness", "trials", "tuned_summary"]
