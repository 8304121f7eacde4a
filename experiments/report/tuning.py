"""What a tuned study's results folder shows: every trial, the final-run table, robustness, EVP.

- ``trials(table)``: one row per tuning trial of a run table (``RunTable.trial_runs``): learner,
  task, repeat, trial, config, option values, the validation score it was selected by, test
  accuracy for the record, rank within its learner x task x repeat, whether it was chosen.
- ``tuned_summary(table)``: the summary table of the final runs only (``RunTable`` phase
  ``final``; one row per learner x task:
  chosen configuration, mean ± CI over the final seeds, p against the reference's final runs), with
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

from bpbench.experiments.report import escape
from bpbench.experiments.report.scoring import with_time_to_target
from bpbench.experiments.report.summary import (
    ALWAYS,
    SHOWN,
    TTT_KEY,
    References,
    Summary,
    main_reference,
    summarize_runs,
)
from bpbench.experiments.report.tuning_arms import HAND_PICKED, NOTE_ARMS, default_summary, gain_cells, gains
from bpbench.experiments.report.tuning_cost import EDGE_MARK, cost_cell, cost_note, edge_flags, tuning_cost
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from bpbench.experiments.store.selection import test_at_best_val, val_score

ROBUST_WITHIN = 0.01  # one point of accuracy
TRIAL_COLUMNS = [
    "learner",
    "task",
    "repeat",
    "trial",
    "run_id",
    "run_ids",
    "seeds",
    "status",
    "pruned",
    "config",
    "options",
    "val_score",
    "test_acc",
    "train_flops",
    "wall_seconds",
    "rank",
    "chosen",
]


def study_block(store: RunStore) -> dict[str, Any]:
    """The folder's tuned study table (its ``[tuning]`` and ``[learners]``), {} when there is none."""
    for study in store.studies():
        if isinstance(study.get("study", {}).get("tuning"), dict):
            return dict(study["study"])
    return {}


def select_mode(store: RunStore) -> str:
    """The ``tuning.select`` of the folder's tuned study (default val_accuracy)."""
    return str(study_block(store).get("tuning", {}).get("select", "val_accuracy"))


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


def _trial_row(runs: list[dict[str, Any]], table: RunTable, select: str, seeds: int) -> dict[str, Any]:
    """One trial from its runs (rows of the run table, one per tuning seed stored): the mean validation
    score over its seeds, or NaN when it was pruned, failed or is not complete."""
    details = [table.details[r["run_id"]] for r in runs]
    order = sorted(range(len(runs)), key=lambda i: details[i]["tuning"].get("seed", 0))
    runs, details = [runs[i] for i in order], [details[i] for i in order]
    ok = [(r, d) for r, d in zip(runs, details) if r["status"] == "ok"]
    pruned = next((d for _, d in ok if d["summary"].get("stopped_by") == "pruned"), None)
    scores = [val_score(table.store, r["run_id"], select) for r, _ in ok]
    if pruned is not None:
        status = f"pruned at epoch {pruned['summary'].get('epochs_completed')}"
    else:
        status = "failed" if len(ok) < len(runs) else "ok" if len(ok) >= seeds else "incomplete"
    complete = status == "ok" and None not in scores
    flops = [r["flops"] for r, _ in ok if not math.isnan(r["flops"])]
    return {
        "learner": runs[0]["learner"],
        "task": runs[0]["task"],
        "repeat": int(details[0]["tuning"].get("repeat", 0)),
        "trial": details[0]["trial"],
        "run_id": runs[0]["run_id"],
        "run_ids": [r["run_id"] for r in runs],
        "seeds": len(runs),
        "status": status,
        "pruned": pruned is not None,
        "config": runs[0]["config"],
        "options": details[0]["options"],
        "val_score": float(np.mean(cast(list[float], scores))) if complete else math.nan,
        "test_acc": float(np.mean([r["test_acc"] for r, _ in ok])) if complete else math.nan,
        "train_flops": float(sum(flops)),
        "wall_seconds": float(sum(d.get("wall_seconds") or 0 for d in details)),
    }


def trials(table: RunTable) -> pd.DataFrame:
    """One row per tuning trial of the run table (its runs: one per tuning seed; ``RunTable.trial_runs``);
    empty frame with ``TRIAL_COLUMNS`` when there is none. rank: within its learner x task x repeat
    (1 = best mean validation score; pruned, failed and incomplete trials unranked); chosen: the trial
    whose configuration the repeat's final runs use."""
    block = study_block(table.store).get("tuning", {})
    select, seeds = str(block.get("select", "val_accuracy")), int(block.get("seeds_per_trial", 1))
    mine = table.trial_runs()
    by_trial: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}
    for status, frame in (("ok", mine.runs), ("failed", mine.failed)):
        for run in frame.to_dict("records") if not frame.empty else []:
            tag = table.details[run["run_id"]]["tuning"]
            key = (run["learner"], run["task"], int(tag.get("repeat", 0)), int(tag["trial"]))
            by_trial.setdefault(key, []).append({**run, "status": status})
    finals = {
        (r.learner, r.task, int(table.details[r.run_id]["tuning"].get("repeat", 0))): table.details[r.run_id]["trial"]
        for r in table.select(("final",)).runs.itertuples()
    }
    rows = [_trial_row(runs, table, select, seeds) for runs in by_trial.values()]
    if not rows:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    out = pd.DataFrame(rows).sort_values(["task", "learner", "repeat", "trial"], ignore_index=True)
    out["rank"] = out.groupby(["learner", "task", "repeat"])["val_score"].rank(ascending=False, method="min")
    out["chosen"] = [
        finals.get((str(lt), str(t), int(r))) == n
        for lt, t, r, n in zip(out["learner"], out["task"], out["repeat"], out["trial"])
    ]
    return out[TRIAL_COLUMNS]


def robustness(table: pd.DataFrame) -> pd.Series:
    """(learner, task) -> fraction of its trials (failed and pruned ones count) within one point of
    the best of its repeat, averaged over repeats."""

    def fraction(group: pd.DataFrame) -> float:
        best = group["val_score"].max()
        return math.nan if math.isnan(best) else float((group["val_score"] >= best - ROBUST_WITHIN).sum() / len(group))

    if table.empty:
        return pd.Series(dtype=float)
    per_repeat = table.groupby(["learner", "task", "repeat"])[["val_score"]].apply(fraction)
    return per_repeat.groupby(level=["learner", "task"]).mean()


def mark_edges(config: str, flags: list[str]) -> str:
    """``config`` ("lr=0.03, beta=0.9") with ``EDGE_MARK`` after each value at its range's edge
    (``flags``: "lr high", ...); at the end when a flagged option is not in the label."""
    names = {flag.split()[0] for flag in flags}
    parts = [f"{part}{EDGE_MARK}" if part.split("=")[0] in names else part for part in config.split(", ")]
    marked = ", ".join(parts)
    return marked if EDGE_MARK in marked or not flags else f"{marked}{EDGE_MARK}"


def _choices(finals: pd.DataFrame, edges: dict[tuple[str, str, int], list[str]]) -> dict[tuple[str, str], str]:
    """(learner, task) -> each repeat's chosen configuration ("r0 lr=0.01 | r1 lr=0.03†edge"), once when
    every repeat chose the same one."""
    out: dict[tuple[str, str], str] = {}
    for (learner, task), group in finals.groupby(["learner", "task"], sort=False):
        learner, task = str(learner), str(task)
        picks = group.drop_duplicates("repeat").sort_values("repeat")
        labels = [
            mark_edges(str(c), edges.get((learner, task, int(r)), [])) for c, r in zip(picks["config"], picks["repeat"])
        ]
        same = len(set(labels)) == 1
        out[(learner, task)] = labels[0] if same else " | ".join(f"r{r} {c}" for r, c in zip(picks["repeat"], labels))
    return out


def _repeat_spreads(finals: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(learner, task) -> max - min of the repeats' mean final test accuracies (NaN with one repeat)."""
    means = finals.groupby(["learner", "task", "repeat"])["test_acc"].mean().groupby(level=["learner", "task"])
    spread = (means.max() - means.min()).where(means.size() > 1)
    return {cast(tuple[str, str], k): float(v) for k, v in spread.items()}


def _repeat_cells(finals: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(learner, task) -> each repeat's mean final test accuracy and their spread (max - min)."""
    out: dict[tuple[str, str], str] = {}
    for key, group in finals.groupby(["learner", "task"], sort=False):
        means = group.groupby("repeat")["test_acc"].mean()
        spread = f" (spread {means.max() - means.min():.3f})" if len(means) > 1 else ""
        out[cast(tuple[str, str], key)] = " / ".join(f"{m:.3f}" for m in means) + spread
    return out


def tuned_summary(table: RunTable, reference: References, p_adjust: str = "holm") -> Summary:
    """The summary of the final runs (``RunTable``'s phase ``final``), pooled over repeats (one row per
    learner x task: p against the reference's pooled final runs), with their time to target, each
    repeat's choice and result, the tuning cost, the sampler and robustness; with ``compare_default``,
    the hand-picked rows (phase ``default``) and the tuning gain."""
    final = table.select(("final",))
    finals = final.runs
    if finals.empty:
        return Summary(pd.DataFrame(), p_adjust=p_adjust, tuned=True)
    if select_mode(table.store) == "best_val_accuracy":  # a final run reports the epoch it would be stopped at
        finals = finals.assign(test_acc=[test_at_best_val(table.store, r) for r in finals["run_id"]])
    finals = finals.assign(repeat=[int(table.details[r]["tuning"].get("repeat", 0)) for r in finals["run_id"]])
    tried = trials(table)
    edges = edge_flags(tried, study_block(table.store))
    choices, repeat_cells = _choices(finals, edges), _repeat_cells(finals)
    finals["config"] = [choices[k] for k in zip(finals["learner"], finals["task"])]
    finals, ttt_note = with_time_to_target(final, finals, main_reference(reference))
    notes = ((TTT_KEY, ttt_note),) if ttt_note else ()
    summary = summarize_runs(finals, None, reference, p_adjust, notes, tuned=True)  # failed trials: trial table
    if summary.empty:
        return summary
    rows = _tuned_columns(summary.rows.copy(), table, tried, repeat_cells, _repeat_spreads(finals))
    extra = [NOTE_TUNED, cost_note(tuning_cost(tried), edges)]
    defaults = _default_runs(table.select(("default",)).runs, finals)
    if not defaults.empty:
        arm = default_summary(defaults, reference, p_adjust)
        rows["tuning_gain"] = gains(rows, arm)
        rows[f"{SHOWN}tuning gain"] = gain_cells(rows, arm)
        rows = _with_arm(rows, arm)
        extra.append(NOTE_ARMS)
    return replace(summary, rows=rows).with_notes(*((ALWAYS, note) for note in extra if note))


def _tuned_columns(
    rows: pd.DataFrame,
    table: RunTable,
    tried: pd.DataFrame,
    repeat_cells: dict[tuple[str, str], str],
    spreads: dict[tuple[str, str], float],
) -> pd.DataFrame:
    """``rows`` with trials, sampler, robustness, repeat_spread and the shown columns (repeats, tuning
    cost, sampler, robust)."""
    cost = tuning_cost(tried).set_index(["learner", "task"])
    robust = robustness(tried)
    final = table.select(("final",)).runs
    samplers = {(r.learner, r.task): table.details[r.run_id]["sampler"] for r in final.itertuples()}
    keys = list(zip(rows["learner"], rows["task"]))
    rows["trials"] = [int(cost["trials"].get(k, 0)) for k in keys]
    rows["sampler"] = [samplers.get(k) or "?" for k in keys]
    rows["robustness"] = [float(robust.get(k, math.nan)) for k in keys]
    rows["repeat_spread"] = [spreads.get(k, math.nan) for k in keys]
    rows[f"{SHOWN}repeats"] = [repeat_cells.get(k, "n/a") for k in keys]
    rows[f"{SHOWN}tuning cost"] = [cost_cell(cost.loc[k]) if k in cost.index else "none" for k in keys]
    rows[f"{SHOWN}sampler"] = rows["sampler"]
    rows[f"{SHOWN}robust"] = rows["robustness"].map(lambda r: "n/a" if math.isnan(r) else f"{r:.2f}")
    return rows


def _default_runs(defaults: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """The hand-picked arm's runs, with the final runs of learners without a search space (their
    hand-picked configuration) so every reference has runs to compare with."""
    if defaults.empty:
        return defaults
    spaceless = finals[finals["learner"].map(lambda label: label not in set(defaults["learner"]))]
    return pd.concat([defaults, spaceless.drop(columns=["repeat"])], ignore_index=True)


def _with_arm(summary: pd.DataFrame, arm: pd.DataFrame) -> pd.DataFrame:
    """The tuned rows, each followed by its learner's hand-picked row."""
    arm = arm.assign(**{c: "" for c in summary.columns if str(c).startswith(SHOWN)})
    arm["sampler"] = arm[f"{SHOWN}sampler"] = HAND_PICKED
    rows = []
    for _, row in summary.iterrows():
        rows.append(row)
        rows += [r for _, r in arm[(arm["learner"] == row["learner"]) & (arm["task"] == row["task"])].iterrows()]
    return pd.DataFrame(rows).reset_index(drop=True)


NOTE_TUNED = (
    "Tuned: per repeat (an independent tuning study: its own sampler seed and tuning seeds), the "
    "configuration with the best mean validation accuracy over its tuning seeds among the trials not "
    "pruned (the test split plays no part), retrained on that repeat's fresh final seeds; each row pools "
    "the final runs of every repeat (seeds: repeats x final seeds), so its interval and p (Welch, "
    "against the reference's pooled final runs) hold the variability of tuning itself; repeats: each "
    "repeat's mean final test accuracy and their spread (max - min); trials: configurations tried per "
    "learner x task over all repeats (sampler none: no search space, its one configuration); robust: "
    "fraction of a repeat's trials within one point of its best mean validation accuracy, averaged over "
    "repeats."
)


def render_trials(table: pd.DataFrame, fmt: str) -> str:
    """Every trial: learner, task, repeat, trial, tuning seeds, configuration, status (pruned at
    epoch e), mean validation score, rank within its repeat, chosen."""
    if table.empty:
        return "no tuning trials"
    columns = ["learner", "task", "repeat", "trial", "seeds", "config", "status", "val_score", "rank", "chosen"]
    shown = table[columns].copy()
    shown["val_score"] = shown["val_score"].map(lambda v: "n/a" if math.isnan(v) else f"{v:.4f}")
    shown["rank"] = shown["rank"].map(lambda v: "n/a" if math.isnan(v) else str(int(v)))
    shown["chosen"] = shown["chosen"].map(lambda c: "*" if c else "")
    if fmt == "csv":
        csv = table.assign(options=table["options"].map(json.dumps), run_ids=table["run_ids"].map(json.dumps))
        return escape.csv_safe(csv).to_csv(index=False)
    if fmt == "markdown":
        return shown.to_markdown(index=False)
    if fmt == "html":
        return shown.to_html(index=False, classes="results", border=0)
    if fmt == "latex":
        from bpbench.experiments.report.render import to_latex

        return to_latex(shown.astype(str), [])
    return shown.to_markdown(index=False, tablefmt="simple")


__all__ = [
    "evp_curve",
    "expected_max",
    "render_trials",
    "robustness",
    "study_block",
    "trials",
    "tuned_summary",
]
