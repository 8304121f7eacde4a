"""Summary tables from a results folder: one row per learner configuration x task.

``tidy(store)`` is the tidy results table every table and figure starts from: the stored
metric rows (run_id, epoch, step, split, metric, layer, value) joined with what each run
was (learner label, configuration, task, seed, model, budget, which limit stopped it).
``per_run`` reduces it to one row per run; ``summarize`` to mean and 95% t-interval over
seeds per (learner, config, task), with Welch's t-test of test accuracy against one
reference label (``backprop`` unless the study names another with ``reference``) and a
check that the runs compared on a task had equal budgets; ``render`` prints it as
text, markdown, LaTeX (booktabs), HTML or csv. A metric a run does not record is NaN and
shows as n/a, never as 0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, cast

import pandas as pd

from bpbench.experiments.plan import catalog
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.study import REFERENCE_LABEL, study_references
from bpbench.experiments.report import learner_styles, pairwise
from bpbench.experiments.report.scoring import with_time_to_target
from bpbench.experiments.report.stats import NO_SPREAD, bounded_interval, stars, t_interval, welch_undefined
from bpbench.experiments.store import records
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

FORMATS = ("text", "markdown", "latex", "html", "csv")
LEARNER_ORDER = learner_styles.ORDER  # the learner display catalog's (report/learner_styles.py)
RUN_KEYS = ["learner", "config", "task"]


# per-run measure -> (rendered header, number format, divisor applied before formatting): the
# measurement catalog's table columns (plan/catalog.py), in table order
def measures_shown() -> dict[str, tuple[str, str, float]]:
    """Per-run measure -> (header, format, divisor) of the catalog's table columns, read at call time."""
    return {m.name: (m.header or m.name, m.fmt, m.scale) for m in catalog.shown()}


MEASURES = measures_shown()  # the built-in catalog's
NOTE_HEAD = (
    "Cells: mean ± half-width of the 95% t-interval over seeds; n/a: not measured for this learner "
    "(each run's meta.json says why, under 'unmeasured'). {p_note}"
)


def cells_note() -> str:
    """The table's first note: ``NOTE_HEAD`` (with its ``{p_note}`` left to fill) and the note of each
    catalog measure shown that has one, in table order; learner names from the learner display catalog."""
    some, every = learner_styles.exact_text()
    notes = [m.note.format(exact=some, all_exact=every) for m in catalog.shown() if m.note]
    return " ".join([NOTE_HEAD, *notes])


NOTE_CELLS = cells_note()
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


def summarize_runs(
    runs: pd.DataFrame,
    failed: pd.DataFrame | None = None,
    reference: References = REFERENCE_LABEL,
    p_adjust: str = "holm",
    extra_notes: tuple[str, ...] = (),
    tuned: bool = False,
) -> pd.DataFrame:
    """Per (learner, config, task): seeds, mean/low/high of each measure, p vs ``reference``, budget.

    ``tuned``: the runs are a tuned study's final runs, one chosen configuration per label and task;
    each compares with its reference label's chosen configuration, whatever its values.

    ``reference``: the learner label every p-value compares against (``_reference_runs``),
    or a mapping learner label -> its reference label (a study's per-learner ``reference``).
    ``failed``: rows (learner, config, task, learner_name, budget) of failed runs, counted per
    group; a group whose runs all failed gets a row of n/a. The frame's
    ``attrs["notes"]`` holds the table's footnotes (unequal budgets included) and
    ``attrs["reference"]`` the reference label. ``p_adjust``: "holm" (p over all rows of the
    table Holm-adjusted) or "raw"; ``p_raw`` keeps the raw p and ``diff_*`` the difference of
    mean test accuracy to the reference with its Welch interval (``experiments.report.pairwise``).
    Test accuracy's interval is a percentile bootstrap (within [0, 1]); other measures' the t-interval.
    Runs with time-to-target columns (``scoring.with_time_to_target``) add their medians and counts.
    """
    pairwise.check_mode(p_adjust)
    if runs.empty:
        return pd.DataFrame()
    grouped = runs.groupby(RUN_KEYS, sort=False)
    rows = []
    for keys, group in grouped:
        learner, config, task = cast(tuple[str, str, str], keys)  # group keys: the runs' str labels
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
        ref_acc, row["reference"] = _reference_runs(
            runs, learner, config, task, _reference_for(reference, learner), any_config=tuned
        )
        row.update(pairwise.compare(group["test_acc"], ref_acc))
        row["p_undefined"] = None if ref_acc is None else welch_undefined(group["test_acc"], ref_acc)
        row.update(pairwise.time_columns(group))
        row["cost_from_flops"] = bool(group["cost_from_flops"].any()) if "cost_from_flops" in group else False
        ratio = group["wall_per_cpu"].median() if "wall_per_cpu" in group else math.nan
        row["contended"] = bool(ratio > CONTENTION_FACTOR)
        rows.append(row)
    if failed is not None and not failed.empty:  # groups whose every run failed still get a row
        present = {(r["learner"], r["config"], r["task"]) for r in rows}
        for key, group in failed.groupby(RUN_KEYS, sort=False):
            if key not in present:
                rows.append(
                    {
                        **dict(zip(RUN_KEYS, key)),
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
                )
    out = pd.DataFrame(rows)
    out["_rank"] = out["learner_name"].map(learner_styles.rank)
    out["_config"] = out["config"].map(_natural)
    out = out.sort_values(["task", "_rank", "learner", "_config"], kind="stable").drop(columns=["_rank", "_config"])
    out = out.reset_index(drop=True)
    out["failed"] = 0
    if failed is not None and not failed.empty:
        counts = failed.groupby(RUN_KEYS).size()
        out["failed"] = [int(counts.get((r.learner, r.config, r.task), 0)) for r in out.itertuples()]
    notes = _budget_notes(runs)
    out["unequal_budget"] = out["task"].map(lambda t: t in notes)
    used = {label: _reference_for(reference, label) for label in out["learner"].unique()}
    main_ref = max(sorted(set(used.values())), key=list(used.values()).count) if used else REFERENCE_LABEL
    p_note = NOTE_P.format(reference=main_ref)
    others = {
        ref: sorted(label for label, r in used.items() if r == ref and label != ref)
        for ref in sorted(set(used.values()) - {main_ref})
    }
    p_note += "".join(f" {', '.join(labels)} against {ref!r} instead." for ref, labels in others.items() if labels)
    p_note += " " + pairwise.adjust(out, p_adjust)
    extra = [pairwise.NOTE_DIFF, pairwise.detectable_note(runs), *extra_notes]
    out.attrs["notes"] = [" ".join([cells_note().format(p_note=p_note), *extra]), *notes.values()]
    out.attrs["p_adjust"] = p_adjust
    out.attrs["reference"] = main_ref if not others else "reference"
    out.attrs["marked_notes"] = ([NOTE_FROM_FLOPS] if out["cost_from_flops"].any() else []) + (
        [NOTE_CONTENTION] if out["contended"].any() else []
    )
    flat = out[out["p_undefined"] == NO_SPREAD]
    if not flat.empty:
        names = ", ".join(f"{r.learner}{f' ({r.config})' if r.config else ''} on {r.task}" for r in flat.itertuples())
        out.attrs["marked_notes"].append(f"p n/a for {names}: {NO_SPREAD} (not p = 0).")
    return out


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


def summarize(table: RunTable, reference: References | None = None, p_adjust: str = "holm") -> pd.DataFrame:
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
    notes = (ttt_note, pairwise.split_note(resampled)) if ttt_note else ()
    return summarize_runs(runs, failed, reference, p_adjust, notes)


def main_reference(reference: References) -> str:
    """The one label of ``reference``, or the label most learners compare against (ties: by name)."""
    if isinstance(reference, str):
        return reference
    values = list(reference.values())
    return max(sorted(set(values)), key=values.count) if values else REFERENCE_LABEL


def _cell(mean: float, low: float, high: float, fmt: str, scale: float) -> str:
    if math.isnan(mean):
        return "n/a"
    if math.isnan(high):
        return f"{mean / scale:{fmt}}"
    return f"{mean / scale:{fmt}} ± {(high - mean) / scale:{fmt}}"


def _p_cell(p: float, reference: str) -> str:
    if reference == "ref":
        return "ref"
    if math.isnan(p):
        return "n/a"
    return f"{p:.2g}{stars(p)}"


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the printed table: strings, one column per measure."""
    table = pd.DataFrame(
        {
            "learner": summary["learner"] + summary["config"].map(lambda c: f" ({c})" if c else ""),
            "task": summary["task"] + summary["unequal_budget"].map(lambda u: UNEQUAL_MARK if u else ""),
            "budget": summary["budget"],
            "stopped by": summary["stopped_by"],
            "seeds": summary["seeds"].astype(str) + summary["failed"].map(lambda f: f" ({f} failed)" if f else ""),
        }
    )
    if "trials" in summary:  # a tuned study's final runs (experiments/report/tuning.py)
        table["trials"] = summary["trials"].astype(str)
        table["sampler"] = summary["sampler"]
        table["robust"] = summary["robustness"].map(lambda r: "n/a" if math.isnan(r) else f"{r:.2f}")
    from_flops = summary["cost_from_flops"] if "cost_from_flops" in summary else pd.Series(False, index=summary.index)
    for name, (header, fmt, scale) in measures_shown().items():
        table[header] = [
            _cell(m, lo, hi, fmt, scale)
            for m, lo, hi in zip(summary[f"{name}_mean"], summary[f"{name}_low"], summary[f"{name}_high"])
        ]
        if name == "train_s" and "contended" in summary:
            table[header] = [
                f"{cell}{CONTENTION_MARK}" if mark else cell for cell, mark in zip(table[header], summary["contended"])
            ]
        if name in ("synops", "energy"):
            table[header] = [
                f"{cell}{FROM_FLOPS_MARK}" if mark and cell != "n/a" else cell
                for cell, mark in zip(table[header], from_flops)
            ]
        if name == "test_acc":
            table[header] = [
                _bounded_cell(m, lo, hi)
                for m, lo, hi in zip(summary["test_acc_mean"], summary["test_acc_low"], summary["test_acc_high"])
            ]
            for column, cells in _pairwise_cells(summary).items():
                table[column] = cells
    for column, cells in _time_cells(summary).items():
        table[column] = cells
    return table


def _bounded_cell(mean: float, low: float, high: float) -> str:
    """An accuracy and its (asymmetric) interval: '0.953 [0.941, 0.962]'."""
    if math.isnan(mean) or math.isnan(high):
        return _cell(mean, low, high, ".3f", 1.0)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _p_header(summary: pd.DataFrame) -> str:
    adjusted = " (Holm-adjusted)" if summary.attrs.get("p_adjust", "holm") == "holm" else " (raw)"
    return f"p vs {summary.attrs.get('reference', REFERENCE_LABEL)}{adjusted}"


def _pairwise_cells(summary: pd.DataFrame) -> dict[str, list[str]]:
    """The difference to the reference with its Welch interval, and the p column."""
    diff = [
        "ref"
        if r == "ref"
        else "n/a"
        if math.isnan(m)
        else f"{m:+.3f}"
        if math.isnan(hi)
        else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        for m, lo, hi, r in zip(summary["diff_mean"], summary["diff_low"], summary["diff_high"], summary["reference"])
    ]
    p = [_p_cell(p, r) for p, r in zip(summary["p_vs_reference"], summary["reference"])]
    return {"diff vs ref": diff, _p_header(summary): p}


TIME_HEADERS = {
    "epochs": ("epochs to target", ".3g", 1.0),
    "flops": ("GFLOPs to target", ".3g", 1e9),
    "seconds": ("s to target", ".3g", 1.0),
    "samples": ("samples to target", ".3g", 1.0),
}


def _time_cells(summary: pd.DataFrame) -> dict[str, list[str]]:
    """Median time to target per measure ("not reached": at most half of the seeds did) and reached k/n."""
    if "ttt_n" not in summary:
        return {}
    cells: dict[str, list[str]] = {}
    for measure, (header, fmt, scale) in TIME_HEADERS.items():
        cells[header] = [
            "n/a" if n == 0 or math.isnan(v) else "not reached" if math.isinf(v) else f"{v / scale:{fmt}}"
            for v, n in zip(summary[f"ttt_{measure}_median"], summary["ttt_n"])
        ]
    cells["reached"] = ["n/a" if n == 0 else f"{k}/{n}" for k, n in zip(summary["reached"], summary["ttt_n"])]
    return cells


BASE_COLUMNS = {"learner": "learner", "task": "task", "budget": "budget", "stopped": "stopped by", "seeds": "seeds"}
# the LaTeX default: rows grouped under a line per task (no task column), the learner column wrapping
# (tabularx): fits an article's single-column page (checked by pdflatex in tests/test_table.py)
LATEX_COLUMNS = ("learner", "test_acc", "diff", "p")
LATEX_TEXT = ("task", "budget", "stopped by")  # left-aligned in LaTeX; the other columns are numbers (right)
LATEX_P_HEADER = {"holm": "p (Holm)", "raw": "p (raw)"}


def column_headers(summary: pd.DataFrame) -> dict[str, str]:
    """Column key (what --columns takes) -> its header in ``display_frame``."""
    return {
        **BASE_COLUMNS,
        **{name: header for name, (header, _, _) in measures_shown().items()},
        "diff": "diff vs ref",
        "p": _p_header(summary),
        **{f"ttt_{m}": header for m, (header, _, _) in TIME_HEADERS.items()},
        "reached": "reached",
    }


def check_columns(keys: list[str]) -> None:
    """A ValueError naming the first key that is not a column key of the table."""
    allowed = column_headers(pd.DataFrame())
    for key in keys:
        if key not in allowed:
            raise ValueError(f"--columns {key!r}: allowed: {', '.join(allowed)}")


def select_columns(table: pd.DataFrame, summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The columns ``keys`` of the printed table, in that order; a ValueError naming an unknown key."""
    check_columns(keys)
    headers = column_headers(summary)
    return table[[headers[key] for key in keys if headers[key] in table]]


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
LATEX_SYMBOLS = {
    "±": r"$\pm$",
    UNEQUAL_MARK: r"$^\dagger$",
    FROM_FLOPS_MARK: r"$^\ddagger$",
    CONTENTION_MARK: r"$^\S$",
    "−": "-",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the table's symbols as math."""
    out = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, latex in LATEX_SYMBOLS.items():
        out = out.replace(symbol, latex)
    if not out.isascii():
        raise ValueError(f"cannot write {text!r} in LaTeX: non-ASCII character left after escaping")
    return out


def to_latex(table: pd.DataFrame, notes: list[str], groups: pd.Series | None = None) -> str:
    """A booktabs ``tabularx`` a line wide (``\\usepackage{booktabs,tabularx}``; ready to ``\\input``):
    the first column wraps (ragged right) in the width the others leave; notes as full-width rows
    below the rule. ``groups`` (one label per row, e.g. the task): rows under an italic line per
    label, in order of first appearance."""
    n = len(table.columns)
    spec = ">{\\raggedright\\arraybackslash}X" + "".join("l" if c in LATEX_TEXT else "r" for c in table.columns[1:])
    lines = [
        f"\\begin{{tabularx}}{{\\linewidth}}{{@{{}}{spec}@{{}}}}",
        r"\toprule",
        " & ".join(latex_escape(str(c)) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    rows = [" & ".join(latex_escape(str(v)) for v in row) + r" \\" for row in table.itertuples(index=False)]
    if groups is None:
        lines += rows
    else:
        labels = list(groups)
        for k, label in enumerate(dict.fromkeys(labels)):
            lines += [r"\addlinespace"] if k else []
            lines.append(f"\\multicolumn{{{n}}}{{@{{}}l}}{{\\textit{{{latex_escape(str(label))}}}}} \\\\")
            lines += [row for row, mine in zip(rows, labels) if mine == label]
    lines.append(r"\bottomrule")
    lines += [
        f"\\multicolumn{{{n}}}{{p{{0.95\\linewidth}}}}{{\\footnotesize {latex_escape(note)}}} \\\\" for note in notes
    ]
    lines.append(r"\end{tabularx}")
    return "\n".join(lines) + "\n"


def render(summary: pd.DataFrame, fmt: str, columns: list[str] | None = None) -> str:
    """The summary as text | markdown | latex | html | csv (csv: every number, unrounded).

    ``columns``: the column keys to print (``column_headers``); default every column, and for
    LaTeX ``LATEX_COLUMNS`` (a page wide).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if summary.empty:
        return "no completed runs"
    if fmt == "csv":
        return summary.to_csv(index=False)
    table, notes = display_frame(summary), summary.attrs.get("notes", [])
    keys = columns or (list(LATEX_COLUMNS) if fmt == "latex" else None)
    groups = table["task"] if fmt == "latex" and not columns else None
    if keys:
        table = select_columns(table, summary, keys)
    if fmt == "latex":  # short headers, and fractions without their leading 0: the default columns fit a page
        table = table.rename(columns={_p_header(summary): LATEX_P_HEADER.get(summary.attrs.get("p_adjust", ""), "p")})
        for column in ("test acc", "diff vs ref"):
            if column in table:
                table[column] = table[column].str.replace(r"(?<![\d.])0\.(?=\d)", ".", regex=True)
    unequal = [f"{UNEQUAL_MARK} {note}" for note in notes[1:]]
    notes = [notes[0], *unequal, *summary.attrs.get("marked_notes", [])] if notes else []
    return format_table(table, notes, fmt, "results", groups)


def format_table(
    table: pd.DataFrame, notes: list[str], fmt: str, css_class: str, groups: pd.Series | None = None
) -> str:
    """A display frame and its notes as markdown | latex | html (class ``css_class``) | text;
    ``groups``: LaTeX's row groups (``to_latex``)."""
    if fmt == "markdown":
        return table.to_markdown(index=False) + "\n\n" + "\n\n".join(notes) + "\n"
    if fmt == "latex":
        return to_latex(table, notes, groups)
    if fmt == "html":
        from html import escape

        return table.to_html(index=False, classes=css_class, border=0) + "".join(
            f'\n<p class="note">{escape(note)}</p>' for note in notes
        )
    return table.to_markdown(index=False, tablefmt="simple") + "\n\n" + "\n".join(notes)
