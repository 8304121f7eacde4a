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
from bpbench.experiments.report.table import SHOWN, References, runs_of, summarize_runs
from bpbench.experiments.report.tuning_arms import HAND_PICKED, NOTE_ARMS, default_summary, gain_cells
from bpbench.experiments.report.tuning_cost import EDGE_MARK, cost_cell, cost_note, edge_flags, tuning_cost
from bpbench.experiments.store.describe import varied_label
from bpbench.experiments.store.run_store import RunStore
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


def tags(store: RunStore) -> dict[str, dict[str, Any]]:
    """Run id -> its ``spec["tuning"]`` tag, for the runs of a tuned study (empty for a plain folder)."""
    return {m["run_id"]: m["spec"]["tuning"] for m in store.iter_metas() if m["spec"].get("tuning")}


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


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        key.split(".", 1)[1] if key.startswith("params.") else key: (
            spec["params"] if key.startswith("params.") else spec["model"]
        )[key.split(".", 1)[1]]
        for key in spec.get("varied", [])
    }


def _trial_row(metas: list[dict[str, Any]], store: RunStore, select: str, seeds: int) -> dict[str, Any]:
    """One trial from its runs' metas (one per tuning seed stored): the mean validation score over
    its seeds, or NaN when it was pruned, failed or is not complete."""
    metas = sorted(metas, key=lambda m: m["spec"]["tuning"].get("seed", 0))
    spec, tag = metas[0]["spec"], metas[0]["spec"]["tuning"]
    ok = [m for m in metas if m["status"] == "ok"]
    pruned = next((m for m in ok if m.get("summary", {}).get("stopped_by") == "pruned"), None)
    scores = [val_score(store, m["run_id"], select) for m in ok]
    if pruned is not None:
        status = f"pruned at epoch {pruned['summary'].get('epochs_completed')}"
    else:
        status = "failed" if len(ok) < len(metas) else "ok" if len(ok) >= seeds else "incomplete"
    complete = status == "ok" and None not in scores
    return {
        "learner": spec["label"],
        "task": spec["task_label"],
        "repeat": int(tag.get("repeat", 0)),
        "trial": tag["trial"],
        "run_id": metas[0]["run_id"],
        "run_ids": [m["run_id"] for m in metas],
        "seeds": len(metas),
        "status": status,
        "pruned": pruned is not None,
        "config": varied_label(spec),
        "options": _options(spec),
        "val_score": float(np.mean(cast(list[float], scores))) if complete else math.nan,
        "test_acc": float(np.mean([m["summary"]["test_accuracy"] for m in ok])) if complete else math.nan,
        "train_flops": float(sum(m.get("summary", {}).get("train_flops") or 0 for m in ok)),
        "wall_seconds": float(sum(m.get("wall_seconds") or 0 for m in metas)),
    }


def trials(store: RunStore) -> pd.DataFrame:
    """One row per tuning trial of the folder (its runs: one per tuning seed); empty frame with
    ``TRIAL_COLUMNS`` when there is none. rank: within its learner x task x repeat (1 = best mean
    validation score; pruned, failed and incomplete trials unranked); chosen: the trial whose
    configuration the repeat's final runs use."""
    block = study_block(store).get("tuning", {})
    select, seeds = str(block.get("select", "val_accuracy")), int(block.get("seeds_per_trial", 1))
    by_trial: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}
    finals: dict[tuple[str, str, int], int] = {}
    for meta in store.iter_metas():
        spec, tag = meta["spec"], meta["spec"].get("tuning") or {}
        key = (spec["label"], spec["task_label"], int(tag.get("repeat", 0)))
        if tag.get("phase") == "final" and tag.get("trial") is not None:
            finals[key] = tag["trial"]
        if tag.get("phase") == "tuning":
            by_trial.setdefault((*key, tag["trial"]), []).append(meta)
    rows = [_trial_row(metas, store, select, seeds) for metas in by_trial.values()]
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


def _repeat_of(tag_of: dict[str, dict[str, Any]], run_id: str) -> int:
    return int(tag_of.get(run_id, {}).get("repeat", 0))


def _choices(finals: pd.DataFrame, edges: dict[tuple[str, str, int], list[str]]) -> dict[tuple[str, str], str]:
    """(learner, task) -> each repeat's chosen configuration ("r0 lr=0.01 | r1 lr=0.03†edge"), once when
    every repeat chose the same one."""
    out: dict[tuple[str, str], str] = {}
    for (learner, task), group in finals.groupby(["learner", "task"], sort=False):
        learner, task = str(learner), str(task)
        picks = group.drop_duplicates("repeat").sort_values("repeat")
        labels = [
            f"{c}{EDGE_MARK if edges.get((learner, task, int(r))) else ''}"
            for c, r in zip(picks["config"], picks["repeat"])
        ]
        same = len(set(labels)) == 1
        out[(learner, task)] = labels[0] if same else " | ".join(f"r{r} {c}" for r, c in zip(picks["repeat"], labels))
    return out


def _repeat_cells(finals: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(learner, task) -> each repeat's mean final test accuracy and their spread (max - min)."""
    out: dict[tuple[str, str], str] = {}
    for key, group in finals.groupby(["learner", "task"], sort=False):
        means = group.groupby("repeat")["test_acc"].mean()
        spread = f" (spread {means.max() - means.min():.3f})" if len(means) > 1 else ""
        out[cast(tuple[str, str], key)] = " / ".join(f"{m:.3f}" for m in means) + spread
    return out


def tuned_summary(store: RunStore, reference: References, p_adjust: str = "holm") -> pd.DataFrame:
    """The summary of the final runs, pooled over repeats (one row per learner x task: p against the
    reference's pooled final runs), with each repeat's choice and result, the tuning cost, the
    sampler and robustness; with ``compare_default``, the hand-picked rows and the tuning gain."""
    tag_of = tags(store)
    runs, _ = runs_of(store)  # failed trials are counted in the trial table
    if runs.empty:
        return pd.DataFrame()
    phase = runs["run_id"].map(lambda r: tag_of.get(r, {}).get("phase"))
    finals = runs[phase == "final"].reset_index(drop=True)
    if finals.empty:
        return pd.DataFrame()
    if select_mode(store) == "best_val_accuracy":  # a final run reports the epoch it would be stopped at
        finals["test_acc"] = [test_at_best_val(store, r) for r in finals["run_id"]]
    finals["repeat"] = [_repeat_of(tag_of, r) for r in finals["run_id"]]
    table = trials(store)
    edges = edge_flags(table, study_block(store))
    choices, repeat_cells = _choices(finals, edges), _repeat_cells(finals)
    finals["config"] = [choices[k] for k in zip(finals["learner"], finals["task"])]
    summary = summarize_runs(finals, None, reference, p_adjust, tuned=True)  # failed trials: in the trial table
    if summary.empty:
        return summary
    cost = tuning_cost(table).set_index(["learner", "task"])
    robust = robustness(table)
    samplers = {
        (m["spec"]["label"], m["spec"]["task_label"]): m["spec"]["tuning"]["sampler"]
        for m in store.iter_metas()
        if (m["spec"].get("tuning") or {}).get("phase") == "final"
    }
    keys = list(zip(summary["learner"], summary["task"]))
    summary["trials"] = [int(cost["trials"].get(k, 0)) for k in keys]
    summary["sampler"] = [samplers.get(k, "?") for k in keys]
    summary["robustness"] = [float(robust.get(k, math.nan)) for k in keys]
    summary[f"{SHOWN}repeats"] = [repeat_cells.get(k, "n/a") for k in keys]
    summary[f"{SHOWN}tuning cost"] = [cost_cell(cost.loc[k]) if k in cost.index else "none" for k in keys]
    summary[f"{SHOWN}sampler"] = summary["sampler"]
    summary[f"{SHOWN}robust"] = summary["robustness"].map(lambda r: "n/a" if math.isnan(r) else f"{r:.2f}")
    notes = summary.attrs["notes"]
    extra = [NOTE_TUNED, cost_note(tuning_cost(table), edges)]
    defaults = _default_runs(runs, phase, finals)
    if not defaults.empty:
        arm = default_summary(defaults, reference, p_adjust)
        summary[f"{SHOWN}tuning gain"] = gain_cells(summary, arm)
        summary = _with_arm(summary, arm)
        extra.append(NOTE_ARMS)
    summary.attrs["notes"] = [" ".join([notes[0], *filter(None, extra)]), *notes[1:]]  # notes[1:]: budget notes
    return summary


def _default_runs(runs: pd.DataFrame, phase: pd.Series, finals: pd.DataFrame) -> pd.DataFrame:
    """The hand-picked arm's runs, with the final runs of learners without a search space (their
    hand-picked configuration) so every reference has runs to compare with."""
    defaults = runs[phase == "default"]
    if defaults.empty:
        return defaults
    spaceless = finals[finals["learner"].map(lambda label: label not in set(defaults["learner"]))]
    return pd.concat([defaults, spaceless.drop(columns=["repeat"])], ignore_index=True)


def _with_arm(summary: pd.DataFrame, arm: pd.DataFrame) -> pd.DataFrame:
    """The tuned rows, each followed by its learner's hand-picked row."""
    attrs = dict(summary.attrs)
    arm = arm.assign(**{c: "" for c in summary.columns if str(c).startswith(SHOWN)})
    arm[f"{SHOWN}sampler"] = HAND_PICKED
    rows = []
    for _, row in summary.iterrows():
        rows.append(row)
        rows += [r for _, r in arm[(arm["learner"] == row["learner"]) & (arm["task"] == row["task"])].iterrows()]
    out = pd.DataFrame(rows).reset_index(drop=True)
    out.attrs.update(attrs)
    return out


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
        from bpbench.experiments.report.table import to_latex

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
