"""What tuning cost and where it ended, per learner x task of a tuned study (from ``report.tuning.trials``).

- ``tuning_cost(table)``: trials (over all repeats, failed and pruned ones included), tuning seeds
  per trial, runs, training FLOPs and wall seconds of every tuning run, and the pruned fraction.
- ``edge_flags(table, study)``: (learner, task, repeat) -> the chosen values within
  ``EDGE_FRACTION`` of their range's ends (log scale for a log range), as "lr high".
- ``cost_cell`` / ``cost_note``: the table column and the note line.
"""

from __future__ import annotations

from typing import Any, cast

import pandas as pd

from bpbench.experiments.plan.tuning import EDGE_FRACTION, Range, edge

EDGE_MARK = "†edge"
COST_COLUMNS = ["learner", "task", "trials", "seeds_per_trial", "runs", "train_flops", "wall_seconds", "pruned"]


def tuning_cost(table: pd.DataFrame) -> pd.DataFrame:
    """One row per learner x task: trials, seeds_per_trial, runs, train_flops, wall_seconds, pruned (fraction)."""
    if table.empty:
        return pd.DataFrame(columns=COST_COLUMNS)
    out = (
        table.groupby(["learner", "task"], sort=False)
        .agg(
            trials=("trial", "size"),
            seeds_per_trial=("seeds", "max"),
            runs=("seeds", "sum"),
            train_flops=("train_flops", "sum"),
            wall_seconds=("wall_seconds", "sum"),
            pruned=("pruned", "mean"),
        )
        .reset_index()
    )
    return out[COST_COLUMNS]


def _range(raw: Any) -> Range | None:
    if not isinstance(raw, dict) or "low" not in raw or "high" not in raw:
        return None
    return Range(float(raw["low"]), float(raw["high"]), bool(raw.get("log", False)))


def _space(study: dict[str, Any], label: str) -> dict[str, Range]:
    """The study's numeric ranges of ``label`` ("lr", "model.hidden" ...), read from its record."""
    search = study.get("learners", {}).get(label, {}).get("search", {})
    model = search.get("model", {}) if isinstance(search.get("model"), dict) else {}
    ranges = {k: _range(v) for k, v in search.items() if k != "model"}
    ranges.update({f"model.{k}": _range(v) for k, v in model.items()})
    return {k: v for k, v in ranges.items() if v is not None}


def edge_flags(table: pd.DataFrame, study: dict[str, Any]) -> dict[tuple[str, str, int], list[str]]:
    """(learner, task, repeat) -> "option low|high" for each chosen value at its range's edge."""
    out: dict[tuple[str, str, int], list[str]] = {}
    rows = cast(list[dict[str, Any]], table[table["chosen"]].to_dict("records") if not table.empty else [])
    for row in rows:
        ranges = _space(study, str(row["learner"]))
        flags = []
        for name, dim in ranges.items():
            value = row["options"].get(name.removeprefix("model."))
            side = edge(dim, value) if isinstance(value, (int, float)) else None
            if side is not None:
                flags.append(f"{name.removeprefix('model.')} {side}")
        out[(str(row["learner"]), str(row["task"]), int(row["repeat"]))] = flags
    return out


def cost_cell(row: pd.Series) -> str:
    """ "T×k, F GFLOPs, S s, P% pruned" for one learner x task."""
    return (
        f"{int(row['trials'])}×{int(row['seeds_per_trial'])}, {row['train_flops'] / 1e9:.3g} GFLOPs, "
        f"{row['wall_seconds']:.3g} s, {100 * row['pruned']:.0f}% pruned"
    )


def cost_note(cost: pd.DataFrame, edges: dict[tuple[str, str, int], list[str]]) -> str:
    """The note's tuning-cost and edge sentences."""
    if cost.empty:
        return ""
    parts = "; ".join(f"{r['learner']} on {r['task']} {cost_cell(r)}" for _, r in cost.iterrows())
    text = (
        "Tuning cost (every repeat; trials × tuning seeds per trial, training FLOPs and wall seconds of "
        f"every tuning run, pruned trials included, and the fraction of trials pruned): {parts}."
    )
    flagged = [f"{lt[0]} on {lt[1]} repeat {lt[2]}: {', '.join(f)}" for lt, f in sorted(edges.items()) if f]
    if flagged:
        text += (
            f" {EDGE_MARK}: a chosen value within {EDGE_FRACTION:.0%} of its range's end (log scale for a "
            f"log range), so the range may cut off a better value: {'; '.join(flagged)}."
        )
    return text


__all__ = ["EDGE_MARK", "cost_cell", "cost_note", "edge_flags", "tuning_cost"]
