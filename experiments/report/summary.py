"""Summarizing a results folder: one row per learner configuration x task (``Summary``).

``summarize(table)`` reduces a run table's verdict runs (``RunTable.verdict``: a tuned study's
final runs only) to mean and 95% interval over seeds per (learner, config, task), with Welch's
t-test of test accuracy against one reference label (``backprop`` unless the study names another
with ``reference``), time to target, and a check that the runs compared on a task had equal
budgets; ``summarize_runs`` does it for rows in memory. A metric a run does not record is NaN
and shows as n/a, never as 0. ``report/render.py`` prints a ``Summary``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import pandas as pd

from bpbench.experiments.plan import catalog
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.study import REFERENCE_LABEL, study_references
from bpbench.experiments.plan.verdict import DEFAULT_MARGIN, study_margin
from bpbench.experiments.report import learner_styles, pairwise, power, verdicts
from bpbench.experiments.report.scoring import TTT_COLUMNS, with_time_to_target
from bpbench.experiments.report.stats import NO_SPREAD, bounded_interval, t_interval, welch_undefined
from bpbench.experiments.store import records
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

LEARNER_ORDER = learner_styles.ORDER  # the learner display catalog's (report/learner_styles.py)
RUN_KEYS = ["learner", "config", "task"]
ALWAYS = ""  # the key of a note sentence shown whatever the columns ("a|b": shown with column a or b)
SHOWN = "shown:"  # a summary column "shown:HEADER" of text cells is printed as column HEADER (report/tuning.py)
TTT_KEY = "|".join([*TTT_COLUMNS, "reached"])  # the time-to-target note's columns


def measures_shown() -> dict[str, tuple[str, str, float]]:
    """Per-run measure -> (header, format, divisor) of the catalog's table columns (``plan/catalog.py``),
    in table order, read at call time."""
    return {m.name: (m.header or m.name, m.fmt, m.scale) for m in catalog.shown()}


NOTE_HEAD = (
    "Cells: mean ± half-width of the 95% t-interval over seeds; n/a: not measured for this learner "
    "(each run's meta.json says why, under 'unmeasured')."
)
NOTE_P = (
    "p: Welch's t-test of test accuracy against the runs of the one learner label {reference!r} on "
    "the same task (never other labels of the same learner): its configuration whose grid values "
    "the row shares (the same lr, say), or its only configuration; n/a where none matches "
    "(* p<.05, ** p<.01, *** p<.001; ref: the reference itself)."
)
UNEQUAL_MARK = "†"
FROM_FLOPS_MARK = "‡"
CONTENTION_MARK = "§"
CONTENTION_FACTOR = 2.0  # median wall/CPU seconds of a row's runs above this: they waited for the CPU
NOTE_CONTENTION = (
    f"{CONTENTION_MARK} contention: these runs' wall time was more than {CONTENTION_FACTOR:g}x "
    "their CPU time (median), so they waited for the CPU (other work on the machine, or more "
    "threads than cores): their train s measures the machine, not the learner; each run's "
    "meta.json holds wall_seconds, cpu_seconds and the load at its start and end."
)
NOTE_FROM_FLOPS = (
    f"{FROM_FLOPS_MARK} no model to hook: synaptic operations and energy are FLOPs / 2 of predict "
    "(dense MACs, nothing skipped), not NeuroBench's effective count of the other rows."
)


def per_run(data: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a tidy table (``RunTable.tidy``): its info and final measurements (NaN = not recorded)."""
    if data.empty:
        return pd.DataFrame()
    info_cols = [c for c in data.columns if c not in ("epoch", "step", "split", "metric", "layer", "value")]
    runs = data[info_cols].drop_duplicates("run_id").set_index("run_id")
    return runs.join(records.measures(data)).reset_index()


def _budget_notes(runs: pd.DataFrame) -> dict[str, str]:
    """Task -> why its runs did not have equal compute (tasks with equal budgets are absent)."""
    notes: dict[str, str] = {}
    for key, group in runs.groupby("task", sort=False):
        task = cast(str, key)  # pandas-stubs types group keys as any Scalar; task labels are str
        budgets = sorted(group["budget"].unique())
        stopped = sorted(group["stopped_by"].unique())
        if len(budgets) > 1:
            notes[task] = f"unequal budget on {task}: runs had different budgets ({'; '.join(budgets)})"
        elif len(stopped) > 1:
            notes[task] = (
                f"unequal budget on {task}: runs were stopped by different limits "
                f"({', '.join(stopped)}), so they did not get equal compute"
            )
    return notes


def _stopped_text(values: pd.Series) -> str:
    counts = values.value_counts()
    return str(counts.index[0]) if len(counts) == 1 else ", ".join(f"{k} {v}" for k, v in counts.items())


References = str | Mapping[str, str]  # one label for every row, or learner label -> its reference label


def _reference_for(reference: References, learner: str) -> str:
    return reference if isinstance(reference, str) else reference.get(learner, REFERENCE_LABEL)


@dataclass(frozen=True)
class Summary:
    """A summary table: ``rows`` (one per learner x config x task: seeds, ``<measure>_mean/_low/_high``,
    the comparison with the reference, time to target, budget) and what its notes say.

    ``notes``: (column key, sentence) of the first note, in order; a sentence keyed by a column key
    (``render.column_keys``) is printed only with its column, ``ALWAYS`` ones always. ``budget_notes``:
    why a task's runs had unequal compute (marked rows); ``marked_notes``: (column key, note) of the
    marks in cells; ``reference``: the label p compares against; ``p_adjust``: holm | raw; ``tuned``:
    the final runs of a tuned study (its rows carry trials, sampler and robustness)."""

    rows: pd.DataFrame
    notes: tuple[tuple[str, str], ...] = ()
    budget_notes: tuple[str, ...] = ()
    marked_notes: tuple[tuple[str, str], ...] = ()
    reference: str = REFERENCE_LABEL
    p_adjust: str = "holm"
    tuned: bool = False
    margin: float = DEFAULT_MARGIN  # the equivalence margin of the verdicts (the study's ``[verdict] margin``)

    @property
    def empty(self) -> bool:
        return self.rows.empty

    def with_notes(self, *notes: tuple[str, str]) -> Summary:
        """This summary with ``notes`` appended to its first note."""
        return replace(self, notes=(*self.notes, *notes))


def measure_notes() -> list[tuple[str, str]]:
    """(column, note) of each catalog measure shown that has one, in table order; learner names from the
    learner display catalog."""
    some, every = learner_styles.exact_text()
    return [(m.column, m.note.format(exact=some, all_exact=every)) for m in catalog.shown() if m.note]


def _group_row(
    runs: pd.DataFrame, group: pd.DataFrame, keys: tuple[str, str, str], reference: str, tuned: bool, margin: float
) -> dict[str, Any]:
    """The summary row of one (learner, config, task) group of completed runs."""
    learner, config, task = keys
    row: dict[str, Any] = {
        "learner": learner,
        "config": config,
        "task": task,
        "learner_name": group["learner_name"].iloc[0],
        "seeds": len(group),
        "budget": group["budget"].iloc[0],
        "stopped_by": _stopped_text(group["stopped_by"]),
    }
    for name in measures_shown():  # a measure the runs' records lack (an older source) is n/a
        values = group[name] if name in group else pd.Series(math.nan, index=group.index)
        interval = bounded_interval if name == "test_acc" else t_interval
        row[f"{name}_mean"], row[f"{name}_low"], row[f"{name}_high"] = interval(values)
    ref_acc, row["reference"] = _reference_runs(runs, learner, config, task, reference, any_config=tuned)
    row.update(pairwise.compare(group["test_acc"], ref_acc, margin))
    row["p_undefined"] = None if ref_acc is None else welch_undefined(group["test_acc"], ref_acc)
    row.update(pairwise.time_columns(group))
    row["cost_from_flops"] = bool(group["cost_from_flops"].any()) if "cost_from_flops" in group else False
    ratio = group["wall_per_cpu"].median() if "wall_per_cpu" in group else math.nan
    row["contended"] = bool(ratio > CONTENTION_FACTOR)
    return row


def _failed_row(keys: tuple[Any, ...], group: pd.DataFrame) -> dict[str, Any]:
    """The row of a group whose every run failed: n/a everywhere."""
    return {
        **dict(zip(RUN_KEYS, keys)),
        "learner_name": group["learner_name"].iloc[0],
        "seeds": 0,
        "budget": group["budget"].iloc[0],
        "stopped_by": "failed",
        "p_raw": math.nan,
        "reference": "",
        "p_undefined": None,
        "cost_from_flops": False,
        "contended": False,
        **pairwise.compare([], None),
        **pairwise.time_columns(group),
        **{f"{m}_{s}": math.nan for m in measures_shown() for s in ("mean", "low", "high")},
    }


def _sorted_rows(rows: list[dict[str, Any]], failed: pd.DataFrame | None) -> pd.DataFrame:
    """The rows in table order (task, learner display order, label, config), with failed counts."""
    out = pd.DataFrame(rows)
    out["_rank"] = out["learner_name"].map(learner_styles.rank)
    out["_config"] = out["config"].map(_natural)
    out = out.sort_values(["task", "_rank", "learner", "_config"], kind="stable").drop(columns=["_rank", "_config"])
    out = out.reset_index(drop=True)
    out["failed"] = 0
    if failed is not None and not failed.empty:
        counts = failed.groupby(RUN_KEYS).size()
        out["failed"] = [int(counts.get((r.learner, r.config, r.task), 0)) for r in out.itertuples()]
    return out


def _p_note(out: pd.DataFrame, reference: References, p_adjust: str, margin: float) -> tuple[str, str]:
    """(the p and verdict columns' note, setting the verdicts (``verdicts.apply``); the label most
    rows compare against, or "reference" when several)."""
    used = {label: _reference_for(reference, label) for label in out["learner"].unique()}
    main_ref = max(sorted(set(used.values())), key=list(used.values()).count) if used else REFERENCE_LABEL
    note = NOTE_P.format(reference=main_ref)
    others = {
        ref: sorted(label for label, r in used.items() if r == ref and label != ref)
        for ref in sorted(set(used.values()) - {main_ref})
    }
    note += "".join(f" {', '.join(labels)} against {ref!r} instead." for ref, labels in others.items() if labels)
    note += " " + verdicts.apply(out, p_adjust, margin)
    return note, main_ref if not others else "reference"


def _marked_notes(out: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """(column key, note) of the marks the rows carry."""
    marked = [("synops_per_sample|energy_per_sample_j", NOTE_FROM_FLOPS)] if out["cost_from_flops"].any() else []
    marked += [("train_seconds", NOTE_CONTENTION)] if out["contended"].any() else []
    flat = out[out["p_undefined"] == NO_SPREAD]
    if not flat.empty:
        names = ", ".join(f"{r.learner}{f' ({r.config})' if r.config else ''} on {r.task}" for r in flat.itertuples())
        marked.append(("p", f"p n/a for {names}: {NO_SPREAD} (not p = 0)."))
    return tuple(marked)


def summarize_runs(
    runs: pd.DataFrame,
    failed: pd.DataFrame | None = None,
    reference: References = REFERENCE_LABEL,
    p_adjust: str = "holm",
    extra_notes: tuple[tuple[str, str], ...] = (),
    tuned: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> Summary:
    """Per (learner, config, task) of ``runs`` (rows of ``RunTable.runs``): seeds, mean/low/high of each
    measure, p vs ``reference``, budget.

    ``tuned``: the runs are a tuned study's final runs, one chosen configuration per label and task;
    each compares with its reference label's chosen configuration, whatever its values.
    ``reference``: the learner label every p-value compares against (``_reference_runs``), or a
    mapping learner label -> its reference label (a study's per-learner ``reference``).
    ``failed``: rows (learner, config, task, learner_name, budget) of failed runs, counted per
    group; a group whose runs all failed gets a row of n/a. ``p_adjust``: "holm" (p over all rows
    Holm-adjusted) or "raw"; ``p_raw`` keeps the raw p and ``diff_*`` the difference of mean test
    accuracy to the reference with its family-level Welch interval, ``verdict`` better / worse /
    equivalent within ±``margin`` / inconclusive (``report/verdicts.py``). Test accuracy's interval
    is the t-interval clipped to [0, 1]; other measures' the t-interval.
    Runs with time-to-target columns (``scoring.with_time_to_target``) add their medians and counts.
    ``extra_notes``: (column key, sentence) appended to the first note.
    """
    pairwise.check_mode(p_adjust)
    if runs.empty:
        return Summary(pd.DataFrame(), p_adjust=p_adjust, tuned=tuned)
    rows = []
    for keys, group in runs.groupby(RUN_KEYS, sort=False):
        key = cast(tuple[str, str, str], keys)  # group keys: the runs' str labels
        rows.append(_group_row(runs, group, key, _reference_for(reference, key[0]), tuned, margin))
    if failed is not None and not failed.empty:  # groups whose every run failed still get a row
        present = {(r["learner"], r["config"], r["task"]) for r in rows}
        rows += [_failed_row(k, g) for k, g in failed.groupby(RUN_KEYS, sort=False) if k not in present]
    out = _sorted_rows(rows, failed)
    budget = _budget_notes(runs)
    out["unequal_budget"] = out["task"].map(lambda t: t in budget)
    p_note, main_ref = _p_note(out, reference, p_adjust, margin)
    notes = [(ALWAYS, NOTE_HEAD), ("p|verdict|diff", p_note), *measure_notes()]
    notes.append(("test_accuracy", pairwise.NOTE_ACC))
    k = int(out["p_raw"].notna().sum())
    notes += [("verdict|diff", power.power_note(runs, k, margin)), *extra_notes]
    marked = _marked_notes(out)
    return Summary(out, tuple(notes), tuple(budget.values()), marked, main_ref, p_adjust, tuned, margin)


def _natural(config: str) -> tuple[Any, ...]:
    """Sort key of a config label: numbers by value (lr=0.0001 before lr=0.01), digit runs
    inside words as numbers (hidden=2x64 before hidden=10x64)."""
    key: list[Any] = []
    for part in config.split(", ") if config else []:
        name, _, value = part.partition("=")
        try:
            key.append((name, 0, float(value), ()))
        except ValueError:
            words = tuple((0, int(w), "") if w.isdigit() else (1, 0, w) for w in re.split(r"(\d+)", value) if w)
            key.append((name, 1, 0.0, words))
    return tuple(key)


def _parts(config: str) -> set[str]:
    return set(config.split(", ")) if config else set()


def _reference_runs(
    runs: pd.DataFrame, learner: str, config: str, task: str, reference: str, any_config: bool = False
) -> tuple[pd.Series | None, str]:
    """(reference test accuracies, reference used) this group's test accuracy is compared with.

    The reference is one learner *label* on the same task, never pooled with other labels.
    Within it, the configuration whose ``key=value`` parts this group's runs share, judged by
    the runs' own option values (the same lr for an lr grid; arch=mlp for an MLP-only rule
    against a backprop arch grid; its only configuration when it varies nothing, or with
    ``any_config``, whatever its values). The second
    value is "ref" for a reference group itself, else "LABEL" or "LABEL (its config)", or ""
    with None when the label has no runs on the task or no configuration matches.
    """
    on_task = runs[(runs["task"] == task) & (runs["learner"] == reference)]
    if learner == reference:
        return None, "ref"
    group = runs[(runs["learner"] == learner) & (runs["config"] == config) & (runs["task"] == task)]
    mine = _parts(config)
    if "values" in group and len(group):
        mine |= {f"{k}={v}" for k, v in json.loads(group["values"].iloc[0]).items()}
    matches = [c for c in on_task["config"].unique() if any_config or _parts(c) <= mine]
    if len(matches) != 1:  # none, or (only with configs of unequal keys) ambiguous
        return None, ""
    (ref_config,) = matches
    ref = on_task[on_task["config"] == ref_config]
    return ref["test_acc"], f"{reference} ({ref_config})" if ref_config else reference


def reference_of(store: RunStore) -> dict[str, str]:
    """Learner label -> its reference label, as the studies written to ``store`` name them
    (a learner table's ``reference``, else the study's, default ``backprop``).

    Raises ConfigError when two studies in one folder give one label different references.
    """
    merged: dict[str, str] = {}
    for study in store.studies():
        for label, ref in study_references(study["study"]).items():
            if merged.setdefault(label, ref) != ref:
                raise ConfigError(
                    f"results folder {str(store.root)!r} holds studies with different references "
                    f"for {label!r} ({', '.join(sorted({merged[label], ref}))}): "
                    "pass one with bpbench table --reference LABEL"
                )
    return merged


def summarize(table: RunTable, reference: References | None = None, p_adjust: str = "holm") -> Summary:
    """``summarize_runs`` of the verdict runs of ``table`` (``RunTable.verdict``), with failures
    counted and each run's time to target (``scoring.with_time_to_target``).

    ``reference``: the label p-values compare against; default: the one its study names.
    """
    pairwise.check_mode(p_adjust)
    table = table.verdict()
    reference = reference or reference_of(table.store)
    runs, ttt_note = with_time_to_target(table, table.runs, main_reference(reference))
    failed = table.failed
    resampled = any(s["study"].get("seeds_resample_split", False) for s in table.store.studies())
    notes = ((TTT_KEY, ttt_note), ("p", pairwise.split_note(resampled))) if ttt_note else ()
    margin = min((study_margin(s["study"]) for s in table.store.studies()), default=DEFAULT_MARGIN)
    return summarize_runs(runs, failed, reference, p_adjust, notes, margin=margin)


def main_reference(reference: References) -> str:
    """The one label of ``reference``, or the label most learners compare against (ties: by name)."""
    if isinstance(reference, str):
        return reference
    values = list(reference.values())
    return max(sorted(set(values)), key=values.count) if values else REFERENCE_LABEL
