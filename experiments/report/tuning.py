"""What a tuned study's results folder shows: every trial, the final-run table, robustness, EVP.

- ``trials(store)``: one row per tuning run (learner, task, trial, config, option values, the
  validation score it was selected by, test accuracy for the record, rank within its learner x
  task, whether it was chosen).
- ``tuned_summary(store)``: the summary table of the final runs only (one row per learner x task:
  chosen configuration, mean ± CI over the final seeds, p against the reference's final runs), with
  the number of trials, the sampler and the tuning robustness added.
- ``robustness``: fraction of a learner's trials within ``ROBUST_WITHIN`` (one point of accuracy)
  of its best validation score.
- ``expected_max(scores, n)``: expected validation performance (Dodge et al. 2019) and its variance.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

import numpy as np
import pandas as pd

from bpbench.experiments.report import escape
from bpbench.experiments.report.table import References, runs_of, summarize_runs
from bpbench.experiments.store.describe import varied_label
from bpbench.experiments.store.run_store import RunStore
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


def tags(store: RunStore) -> dict[str, dict[str, Any]]:
    """Run id -> its ``spec["tuning"]`` tag, for the runs of a tuned study (empty for a plain folder)."""
    return {m["run_id"]: m["spec"]["tuning"] for m in store.iter_metas() if m["spec"].get("tuning")}


def select_mode(store: RunStore) -> str:
    """The ``tuning.select`` of the folder's tuned study (default val_accuracy)."""
    for study in store.studies():
        block = study.get("study", {}).get("tuning")
        if isinstance(block, dict):
            return str(block.get("select", "val_accuracy"))
    return "val_accuracy"


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


def trials(store: RunStore) -> pd.DataFrame:
    """One row per tuning run of the folder (empty frame with ``TRIAL_COLUMNS`` when there is none)."""
    select, rows = select_mode(store), []
    finals: dict[tuple[str, str], int] = {}
    for meta in store.iter_metas():
        spec, tag = meta["spec"], meta["spec"].get("tuning") or {}
        if tag.get("phase") == "final" and tag.get("trial") is not None:
            finals[(spec["label"], spec["task_label"])] = tag["trial"]
        if tag.get("phase") != "tuning":
            continue
        options = {
            key.split(".", 1)[1] if key.startswith("params.") else key: (
                spec["params"] if key.startswith("params.") else spec["model"]
            )[key.split(".", 1)[1]]
            for key in spec.get("varied", [])
        }
        ok = meta["status"] == "ok"
        score = val_score(store, meta["run_id"], select) if ok else None
        rows.append(
            {
                "learner": spec["label"],
                "task": spec["task_label"],
                "trial": tag["trial"],
                "run_id": meta["run_id"],
                "status": meta["status"],
                "config": varied_label(spec),
                "options": options,
                "val_score": math.nan if score is None else score,
                "test_acc": meta.get("summary", {}).get("test_accuracy", math.nan) if ok else math.nan,
            }
        )
    if not rows:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    out = pd.DataFrame(rows).sort_values(["task", "learner", "trial"], ignore_index=True)
    out["rank"] = out.groupby(["learner", "task"])["val_score"].rank(ascending=False, method="min")
    out["chosen"] = [finals.get(cast(tuple[str, str], (r.learner, r.task))) == r.trial for r in out.itertuples()]
    return out[TRIAL_COLUMNS]


def robustness(table: pd.DataFrame) -> pd.Series:
    """(learner, task) -> fraction of its trials (failed ones count) within one point of its best."""

    def fraction(group: pd.DataFrame) -> float:
        best = group["val_score"].max()
        return math.nan if math.isnan(best) else float((group["val_score"] >= best - ROBUST_WITHIN).sum() / len(group))

    if table.empty:
        return pd.Series(dtype=float)
    return table.groupby(["learner", "task"])[["val_score"]].apply(fraction)


def tuned_summary(store: RunStore, reference: References, p_adjust: str = "holm") -> pd.DataFrame:
    """The summary of the final runs, with trials, sampler and robustness per learner x task."""
    tag_of = tags(store)
    runs, failed = runs_of(store)
    if runs.empty:
        return pd.DataFrame()
    runs = runs[runs["run_id"].map(lambda r: tag_of.get(r, {}).get("phase") == "final")].reset_index(drop=True)
    if select_mode(store) == "best_val_accuracy":  # a final run reports the epoch it would be stopped at
        runs["test_acc"] = [test_at_best_val(store, r) for r in runs["run_id"]]
    if not failed.empty:  # failed tuning trials are counted in the trial table, not here
        failed = failed.iloc[0:0]
    summary = summarize_runs(runs, failed, reference, p_adjust, tuned=True)
    if summary.empty:
        return summary
    table = trials(store)
    counts = table.groupby(["learner", "task"]).size() if not table.empty else pd.Series(dtype=int)
    robust = robustness(table)
    samplers = {
        (m["spec"]["label"], m["spec"]["task_label"]): m["spec"]["tuning"]["sampler"]
        for m in store.iter_metas()
        if (m["spec"].get("tuning") or {}).get("phase") == "final"
    }
    keys = list(zip(summary["learner"], summary["task"]))
    summary["trials"] = [int(counts.get(k, 0)) for k in keys]
    summary["sampler"] = [samplers.get(k, "?") for k in keys]
    summary["robustness"] = [float(robust.get(k, math.nan)) for k in keys]
    notes = summary.attrs["notes"]
    summary.attrs["notes"] = [f"{notes[0]} {NOTE_TUNED}", *notes[1:]]  # notes[1:] are budget notes (marked)
    return summary


NOTE_TUNED = (
    "Tuned: each row is the configuration with the best validation accuracy among its learner's trials "
    "(the test split plays no part), retrained on fresh seeds; trials: configurations tried per learner "
    "x task (sampler none: no search space, its one configuration); robust: fraction of trials within one "
    "point of the best validation accuracy."
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
        return escape.csv_safe(table.assign(options=table["options"].map(json.dumps))).to_csv(index=False)
    if fmt == "markdown":
        return shown.to_markdown(index=False)
    if fmt == "html":
        return shown.to_html(index=False, classes="results", border=0)
    if fmt == "latex":
        from bpbench.experiments.report.table import to_latex

        return to_latex(shown.astype(str), [])
    return shown.to_markdown(index=False, tablefmt="simple")


__all__ = ["evp_curve", "expected_max", "render_trials", "robustness", "trials", "tuned_summary"]
