"""Rendering a table: one renderer for the summary table and the score table.

``render(summary, fmt, columns)`` prints a ``summary.Summary`` as text | markdown | latex
(booktabs ``tabularx``, a page wide) | html | csv (every number, unrounded), with the notes of
the columns shown only; ``format_table`` prints any display frame and its notes (the score
table's too). ``column_keys(summary)``: what ``--columns`` takes: the public column names
(``Results.summary``'s, the measurement catalog's ``column``), and the table's own (seeds,
diff, p; a tuned study's repeats, tuning_cost, sampler, robust, tuning_gain).
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from bpbench.experiments.plan import catalog
from bpbench.experiments.plan.time_to_target import TIME_TO_TARGET
from bpbench.experiments.report import verdicts
from bpbench.experiments.report.escape import csv_safe, latex_text, terminal
from bpbench.experiments.report.stats import stars, too_few_seeds
from bpbench.experiments.report.summary import (
    ALWAYS,
    CONTENTION_MARK,
    FROM_FLOPS_MARK,
    SHOWN,
    UNEQUAL_MARK,
    Summary,
)

FORMATS = ("text", "markdown", "latex", "html", "csv")


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


def _measure_cells(summary: Summary, measure: catalog.Measure) -> list[str]:
    """One measure's cells: mean ± half-width (test accuracy: its bounded interval), with the rows' marks."""
    rows = summary.rows
    mean, low, high = (rows[f"{measure.name}_{s}"] for s in ("mean", "low", "high"))
    if measure.name == "test_acc":
        return [_bounded_cell(m, lo, hi, n) for m, lo, hi, n in zip(mean, low, high, rows["seeds"])]
    cells = [_cell(m, lo, hi, measure.fmt, measure.scale) for m, lo, hi in zip(mean, low, high)]
    if measure.name == "train_s":
        cells = [f"{cell}{CONTENTION_MARK}" if mark else cell for cell, mark in zip(cells, rows["contended"])]
    if measure.name in ("synops", "energy"):
        marks = rows["cost_from_flops"]
        cells = [f"{cell}{FROM_FLOPS_MARK}" if mark and cell != "n/a" else cell for cell, mark in zip(cells, marks)]
    return cells


def display_frame(summary: Summary) -> pd.DataFrame:
    """The summary as the printed table: strings, one column per key of ``column_keys``."""
    rows = summary.rows
    table = pd.DataFrame(
        {
            "learner": rows["learner"] + rows["config"].map(lambda c: f" ({c})" if c else ""),
            "task": rows["task"] + rows["unequal_budget"].map(lambda u: UNEQUAL_MARK if u else ""),
            "budget": rows["budget"],
            "stopped by": rows["stopped_by"],
            "seeds": rows["seeds"].astype(str) + rows["failed"].map(lambda f: f" ({f} failed)" if f else ""),
        }
    )
    for column in [c for c in rows.columns if str(c).startswith(SHOWN)]:  # a tuned study's (report/tuning.py)
        table[column[len(SHOWN) :]] = rows[column].astype(str)
    for measure in catalog.shown():
        table[measure.header or measure.column] = _measure_cells(summary, measure)
        if measure.name == "test_acc":
            for column, cells in _pairwise_cells(summary).items():
                table[column] = cells
    for column, cells in _time_cells(summary).items():
        table[column] = cells
    return table


def _bounded_cell(mean: float, low: float, high: float, seeds: int) -> str:
    """An accuracy and its (clipped) interval: '0.953 [0.941, 0.962]'; one seed: '0.953 (1 seed: ...)'."""
    if not math.isnan(mean) and too_few_seeds(seeds):
        return f"{mean:.3f} ({too_few_seeds(seeds)})"
    if not math.isnan(mean) and low == high == mean:  # every seed the same: a zero-width interval is no interval
        return f"{mean:.3f} (all {seeds} seeds equal: no spread)"
    if math.isnan(mean) or math.isnan(high):
        return _cell(mean, low, high, ".3f", 1.0)
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _p_header(summary: Summary) -> str:
    adjusted = " (Holm-adjusted)" if summary.p_adjust == "holm" else " (raw)"
    return f"p vs {summary.reference}{adjusted}"


def _pairwise_cells(summary: Summary) -> dict[str, list[str]]:
    """The difference to the reference with its family-level Welch interval, the verdict and the p column."""
    rows = summary.rows
    diff = [
        "ref"
        if r == "ref"
        else "n/a"
        if math.isnan(m)
        else f"{m:+.3f}"
        if math.isnan(hi)
        else f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        for m, lo, hi, r in zip(rows["diff_mean"], rows["diff_low"], rows["diff_high"], rows["reference"])
    ]
    p = [_p_cell(p, r) for p, r in zip(rows["p_vs_reference"], rows["reference"])]
    verdict = list(rows["verdict"]) if "verdict" in rows else ["n/a"] * len(rows)
    return {"diff vs ref": diff, "verdict": verdict, _p_header(summary): p}


def _time_cells(summary: Summary) -> dict[str, list[str]]:
    """Median time to target per measure ("not reached": at most half of the seeds did) and reached k/n."""
    rows = summary.rows
    if "ttt_n" not in rows:
        return {}
    cells: dict[str, list[str]] = {}
    for measure in TIME_TO_TARGET:
        cells[measure.header] = [
            "n/a"
            if n == 0 or math.isnan(v)
            else "not reached"
            if math.isinf(v)
            else f"{v / measure.scale:{measure.fmt}}"
            for v, n in zip(rows[f"{measure.column}_median"], rows["ttt_n"])
        ]
    cells["reached"] = ["n/a" if n == 0 else f"{k}/{n}" for k, n in zip(rows["reached"], rows["ttt_n"])]
    return cells


BASE_COLUMNS = {
    "label": "learner",
    "task_label": "task",
    "budget": "budget",
    "stopped_by": "stopped by",
    "seeds": "seeds",
}
# a tuned study's columns (report/tuning.py's shown columns)
TUNED_COLUMNS = {
    "repeats": "repeats",
    "tuning_cost": "tuning cost",
    "sampler": "sampler",
    "robust": "robust",
    "tuning_gain": "tuning gain",
}
# the LaTeX default: rows grouped under a line per task (no task column), the learner column wrapping
# (tabularx): fits an article's single-column page (checked by pdflatex in tests/test_table.py)
LATEX_COLUMNS = ("label", "test_accuracy", "diff", "verdict")  # the verdict carries the Holm p; --columns adds p
LATEX_TEXT = ("task", "budget", "stopped by")  # left-aligned in LaTeX; the other columns are numbers (right)
LATEX_P_HEADER = {"holm": "p (Holm)", "raw": "p (raw)"}


def column_keys(summary: Summary | None = None, tuned: bool = False) -> dict[str, str]:
    """Column key (what --columns takes) -> its header in ``display_frame``: the public names of
    ``Results.summary`` where it has the column, the table's own (seeds, diff, p; a tuned study's
    ``TUNED_COLUMNS``) else; ``tuned`` (or a tuned ``summary``): with the tuned study's columns."""
    tuned = tuned or (summary is not None and summary.tuned)
    return {
        **BASE_COLUMNS,
        **(TUNED_COLUMNS if tuned else {}),
        **{m.column: m.header or m.column for m in catalog.shown()},
        "diff": "diff vs ref",
        "verdict": "verdict",
        "p": _p_header(summary) if summary is not None else "p",
        **{m.column: m.header for m in TIME_TO_TARGET},
        "reached": "reached",
    }


def check_columns(keys: list[str], tuned: bool = False) -> None:
    """A ValueError naming the first key that is not a column key of the table (``column_keys``)."""
    allowed = column_keys(tuned=tuned)
    for key in keys:
        if key not in allowed:
            raise ValueError(f"--columns {key!r}: allowed: {', '.join(allowed)}")


def select_columns(table: pd.DataFrame, summary: Summary, keys: list[str]) -> pd.DataFrame:
    """The columns ``keys`` of the printed table, in that order; a ValueError naming an unknown key."""
    check_columns(keys, summary.tuned)
    headers = column_keys(summary)
    return table[[headers[key] for key in keys if headers[key] in table]]


def _shown(key: str, keys: set[str]) -> bool:
    return key == ALWAYS or any(k in keys for k in key.split("|"))


def table_notes(summary: Summary, keys: list[str]) -> list[str]:
    """The notes of the columns ``keys``: the first note's sentences of those columns (and the
    ``ALWAYS`` ones), each unequal budget (marked †), the notes of marks those columns carry."""
    shown = set(keys)
    first = " ".join(sentence for key, sentence in summary.notes if _shown(key, shown))
    unequal = [f"{UNEQUAL_MARK} {note}" for note in summary.budget_notes] if "task_label" in shown else []
    return [first, *unequal, *(note for key, note in summary.marked_notes if _shown(key, shown))]


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
    return latex_text(out)  # control and non-ASCII characters made printable


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


def plain(rows: pd.DataFrame, fmt: str) -> str | None:
    """What a table of ``rows`` prints without display cells: a ValueError for an unknown format, "no
    completed runs" when empty, every number for csv; None for the other formats."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if rows.empty:
        return "no completed runs"
    return csv_safe(rows).to_csv(index=False) if fmt == "csv" else None


def render(summary: Summary, fmt: str, columns: list[str] | None = None) -> str:
    """The summary as text | markdown | latex | html | csv (csv: every number, unrounded).

    ``columns``: the column keys to print (``column_keys``); default every column, and for
    LaTeX ``LATEX_COLUMNS`` (a page wide). The notes describe the columns printed only.
    """
    if (text := plain(summary.rows, fmt)) is not None:
        return text
    table = display_frame(summary)
    keys = columns or (list(LATEX_COLUMNS) if fmt == "latex" else None)
    groups = table["task"] if fmt == "latex" and not columns else None
    if keys:
        table = select_columns(table, summary, keys)
    shown = [key for key, header in column_keys(summary).items() if header in table]
    notes = table_notes(summary, [*shown, *(["task_label"] if groups is not None else [])])
    if fmt == "latex":  # short headers, and fractions without their leading 0: the default columns fit a page
        table = table.rename(columns={_p_header(summary): LATEX_P_HEADER.get(summary.p_adjust, "p")})
        for column in ("test acc", "diff vs ref"):
            if column in table:
                table[column] = table[column].str.replace(r"(?<![\d.])0\.(?=\d)", ".", regex=True)
        table = table.assign(verdict=table["verdict"].map(verdicts.short)) if "verdict" in table else table
    return format_table(table, notes, fmt, "results", groups)


def format_table(
    table: pd.DataFrame, notes: list[str], fmt: str, css_class: str, groups: pd.Series | None = None
) -> str:
    """A display frame and its notes as markdown | latex | html (class ``css_class``) | text;
    ``groups``: LaTeX's row groups (``to_latex``)."""
    if fmt == "markdown":
        return terminal(table.to_markdown(index=False) + "\n\n" + "\n\n".join(notes) + "\n")
    if fmt == "latex":
        return to_latex(table, notes, groups)
    if fmt == "html":
        return table.to_html(index=False, classes=css_class, border=0) + "".join(
            f'\n<p class="note">{escape(note)}</p>' for note in notes
        )
    return terminal(table.to_markdown(index=False, tablefmt="simple") + "\n\n" + "\n".join(notes))
