"""Time to target: when each run first reached a validation-accuracy target.

``curves`` frames hold one row per run and evaluation: run_id, task, epoch, val_acc, test_acc, and
the training cost spent by then (flops, seconds, samples). ``first_reached(curves, targets)`` gives
per run each time-to-target measure (``plan/catalog.py``: ``TIME_TO_TARGET``): the epoch,
FLOPs, seconds and samples of the first evaluation whose validation accuracy
is at least its task's target (NaN and reached = False when none is). Resolution: the
evaluation schedule (``schedule.eval_every``); a run that crossed the target between two
evaluations is counted at the later one. A run that reached the target and later fell below
it keeps its first crossing.

Targets: a study's ``[targets]`` table (task label -> accuracy in (0, 1]); for a task without
one, ``TARGET_FRACTION`` x the reference label's median final validation accuracy on that task,
of its configuration with the highest median (``default_targets``).

The curves come from the run table (``RunTable.curves``: one DuckDB scan per command, cached);
``curves_from_tidy`` computes the same from tidy rows in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.time_to_target import TIME_TO_TARGET
from bpbench.experiments.store.curves import CURVE_COLUMNS
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

TARGET_FRACTION = 0.98
# time-to-target measure -> (curve column, header word)
TTT_COLUMNS = [m.column for m in TIME_TO_TARGET]
NOTE_TTT = (
    "Time to target: the first evaluation (resolution: the evaluation schedule, every eval_every epochs) "
    "at which a run's validation accuracy reached its task's target; median over seeds, a seed that never "
    'reached it counting as infinite ("not reached" when at most half did); reached k/n: seeds that '
    "reached it. Targets: {targets}."
)


def study_targets(store: RunStore) -> dict[str, float]:
    """Task label -> target of the ``[targets]`` tables of the studies written to ``store``;
    a ConfigError for a value outside (0, 1] or two studies that disagree."""
    merged: dict[str, float] = {}
    for study in store.studies():
        for task, value in (study["study"].get("targets") or {}).items():
            check_target(task, value)
            if merged.setdefault(task, float(value)) != float(value):
                raise ConfigError(
                    f"results folder {str(store.root)!r}: studies set different targets for {task!r} "
                    f"({merged[task]}, {value})"
                )
    return merged


def check_target(task: str, value: Any) -> None:
    """A ConfigError unless ``value`` is an accuracy in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ConfigError(f"targets.{task} = {value!r}: expected a validation accuracy in (0, 1]")


def default_targets(runs: pd.DataFrame, reference: str, fraction: float = TARGET_FRACTION) -> dict[str, float]:
    """Task -> ``fraction`` x the median final validation accuracy of ``reference``'s best
    configuration (highest median) on the task; tasks without reference runs are absent."""
    ref = runs[runs["learner"] == reference]
    out = {}
    for task, group in ref.groupby("task", sort=True):
        medians = group.groupby("config")["val_acc"].median().dropna()
        if not medians.empty:
            out[str(task)] = fraction * float(medians.max())
    return out


def targets_for(runs: pd.DataFrame, given: Mapping[str, float], reference: str) -> tuple[dict[str, float], str]:
    """(task -> target, the note's sentence on where each came from) for the tasks of ``runs``."""
    fallback = default_targets(runs, reference)
    targets, parts = {}, []
    for task in sorted(runs["task"].unique()):
        if task in given:
            targets[task] = float(given[task])
            parts.append(f"{task} {targets[task]:.3f} (the study's)")
        elif task in fallback:
            targets[task] = fallback[task]
            parts.append(
                f"{task} {targets[task]:.3f} ({TARGET_FRACTION:g} x {reference}'s median final validation "
                "accuracy, best configuration)"
            )
        else:
            parts.append(f"{task} none (no study target and no {reference} runs: time to target n/a)")
    return targets, "; ".join(parts)


def first_reached(curves: pd.DataFrame, targets: Mapping[str, float]) -> pd.DataFrame:
    """One row per run of ``curves``: target, reached, ttt_epochs, ttt_flops, ttt_seconds,
    ttt_samples (the costs at the first evaluation with val_acc >= target; NaN when never)."""
    cols = ["run_id", "target", "reached", *TTT_COLUMNS]
    if curves.empty:
        return pd.DataFrame(columns=cols)
    data = curves.assign(target=curves["task"].map(dict(targets)).astype(float))
    data = data.sort_values(["run_id", "epoch"], kind="stable")
    hit = data[data["val_acc"] >= data["target"]].drop_duplicates("run_id", keep="first").set_index("run_id")
    out = data.drop_duplicates("run_id")[["run_id", "target"]].set_index("run_id")
    out["reached"] = out.index.isin(hit.index)
    for measure in TIME_TO_TARGET:
        out[measure.column] = hit[measure.curve].reindex(out.index).astype(float)
    return out.reset_index()[cols]


def curves_from_tidy(data: pd.DataFrame) -> pd.DataFrame:
    """``curves`` (plus task) from tidy metric rows: one row per run and evaluation."""
    rows = data[
        (data["layer"] == "")
        & (
            (data["split"].isin(["val", "test"]) & (data["metric"] == "accuracy"))
            | data["metric"].isin(["train_flops", "train_seconds", "train_samples"])
        )
    ]
    key = rows["metric"].where(rows["metric"] != "accuracy", rows["split"] + "_acc")
    wide = rows.assign(metric=key).pivot_table(
        index=["run_id", "epoch"], columns="metric", values="value", aggfunc="last"
    )
    wide = wide.rename(columns={"train_flops": "flops", "train_seconds": "seconds", "train_samples": "samples"})
    wide = wide.reset_index()
    wide.columns.name = None
    for column in CURVE_COLUMNS:
        if column not in wide:
            wide[column] = math.nan
    tasks = data.drop_duplicates("run_id").set_index("run_id")["task"]
    return wide[CURVE_COLUMNS].assign(task=wide["run_id"].map(tasks))


def with_time_to_target(
    table: RunTable, runs: pd.DataFrame, reference: str, targets_from: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, str]:
    """``runs`` (rows of ``table.runs``) with the per-run time-to-target columns of
    ``first_reached`` (from the table's cached curves), and the table note's sentence on the targets;
    default targets from the runs ``targets_from`` (default: ``runs``)."""
    if runs.empty:
        return runs, ""
    source = runs if targets_from is None else targets_from
    targets, said = targets_for(source, study_targets(table.store), reference)
    curves = table.curves()
    curves = curves[curves["run_id"].isin(set(runs["run_id"]))]
    ttt = first_reached(curves, targets)
    return runs.merge(ttt, on="run_id", how="left"), NOTE_TTT.format(targets=said)


def median_time(values: pd.Series) -> float:
    """Median of per-run times with a run that never reached the target as infinite
    (NaN -> inf): inf when at most half of the runs reached it."""
    arr = values.to_numpy(dtype=float)
    return float(np.median(np.where(np.isnan(arr), math.inf, arr))) if arr.size else math.nan
