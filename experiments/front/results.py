"""``Results``: a study's results folder as Python objects (what ``bpbench.run`` and
``bpbench.load`` return).

Everything is read from the folder when asked for (one run table per call, which every view of
that call reads), so a folder that another process is still filling shows the runs finished so
far; the folder itself stays the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.report.render import check_columns, render
from bpbench.experiments.report.score_table import run_times
from bpbench.experiments.report.summary import reference_of, summarize
from bpbench.experiments.store.describe import public
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

if TYPE_CHECKING:
    from bpbench.experiments.schedule.execute import Outcome  # torch: only for the annotation

SUMMARY_COLUMNS = [
    "run_id",
    "label",
    "configuration",
    "learner",
    "task",
    "task_label",
    "seed",
    "phase",
    "status",
    "error",
    "test_accuracy",
    "train_seconds",
    "train_flops",
    "stopped_by",
]
INTERNAL_COLUMNS = ("values", "wall_per_cpu", "chance")  # the tables' helpers (chance: summary's chance_accuracy)


def results_folder(out: str | Path) -> Path:
    """``out`` as a path, or a ConfigError when it holds no runs/ (not a results folder)."""
    root = Path(out)
    if not (root / "runs").is_dir():
        raise ConfigError(f"results folder {str(out)!r} has no runs/ (expected the --out folder of bpbench run)")
    return root


@dataclass(frozen=True)
class Results:
    """The results of a study in the folder ``out``.

    ``ran``: the runs the ``bpbench.run`` call that returned this object executed, in the
    order they finished (empty from ``bpbench.load``; runs found already complete are
    skipped, not re-run); ``wall_seconds``: how long that call took; ``reference``: what
    the table's p-values compare against by default: a label, or learner label -> label
    (from ``bpbench.run``: its study's; else what the folder's studies name, default backprop); ``elsewhere``:
    runs of that call that another driver on the same folder finished meanwhile; ``planned``: the
    run ids of that call's study (``standing()`` says which are ok, failed or missing now).
    """

    out: Path
    ran: tuple[Outcome, ...] = ()
    wall_seconds: float | None = None
    reference: str | Mapping[str, str] | None = None
    elsewhere: int = 0
    planned: tuple[str, ...] = ()  # the run ids of the study that bpbench.run ran

    def standing(self) -> dict[str, list[str]]:
        """The planned runs by their state in the folder now: "ok", "failed", "missing" (none
        stored, or stored incomplete: a driver died, or a run was killed with it)."""
        store = self.store
        out: dict[str, list[str]] = {"ok": [], "failed": [], "missing": []}
        for run_id in self.planned:
            out[store.status(run_id) or "missing"].append(run_id)
        return out

    @property
    def store(self) -> RunStore:
        return RunStore(self.out)

    def run_table(self) -> RunTable:
        """The run table of the folder now (``store/run_table.py``): what every view below reads."""
        return RunTable.read(self.store)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per finished run, failed ones included with their error.

        Columns (named as in every view: ``store/describe.py``, the measurement catalog
        ``plan/catalog.py``): run_id, label (the study's name for the learner configuration),
        configuration (the grid values that vary), learner (registered name), task (registered name),
        task_label, seed (seed index), phase (``run``; a tuned study's ``trial`` or ``final``), status
        ("ok" | "failed"), error, budget, stopped_by, each catalog measure by its column name
        (test_accuracy, train_seconds, train_flops, ...), what the run was (arch, depth, activation,
        lr, ...), the rest of its summary (epochs_completed, steps, chance_accuracy, ...), ``unmeasured``
        (measurement -> why it is n/a for the run), and its time to target (``target``, ``reached``,
        and the epochs, training FLOPs, seconds and samples at the first evaluation that reached it:
        ``ttt_epochs``, ``ttt_flops``, ``ttt_seconds``, ``ttt_samples``; NaN when not reached; a
        failed run: NaN). Missing values are NaN/None.
        """
        table = self.run_table()
        frame = table.public()
        if frame.empty:
            return pd.DataFrame(columns=SUMMARY_COLUMNS)
        frame = frame.drop(columns=[c for c in INTERNAL_COLUMNS if c in frame])
        extras = pd.DataFrame(
            [
                {"run_id": r, **table.details[r]["summary"], "unmeasured": table.details[r]["unmeasured"]}
                for r in frame["run_id"]
            ]
        )
        frame = frame.merge(extras[[c for c in extras if c == "run_id" or c not in frame]], on="run_id", how="left")
        frame = frame.merge(run_times(table, self.reference), on="run_id", how="left")
        frame = frame[[*SUMMARY_COLUMNS, *(c for c in frame if c not in SUMMARY_COLUMNS)]]
        return frame.sort_values(["task_label", "label", "configuration", "seed"], kind="stable").reset_index(drop=True)

    @property
    def metrics(self) -> pd.DataFrame:
        """The tidy rows of every completed run (run_id, epoch, step, split, metric, layer, value)
        joined with what the run was (label, learner, configuration, task, task_label, seed, phase,
        model, budget), named as in every view (``store/describe.py``)."""
        return public(self.run_table().tidy())

    @property
    def tuning(self) -> pd.DataFrame:
        """A tuned study's trials, one row per trial (its runs: one per tuning seed): learner, task,
        repeat, trial, run_id (its first seed's), run_ids, seeds, status ("pruned at epoch e"), pruned,
        config, options (searched option -> value), val_score (mean over its seeds: what selection
        used), test_acc (reported only), train_flops, wall_seconds, rank (1 = best validation score of
        its learner x task x repeat), chosen. Empty for a plain study."""
        from bpbench.experiments.report.tuning import trials

        return trials(self.run_table())

    def comparisons(self, reference: str | None = None, p: str = "holm") -> pd.DataFrame:
        """The summary table's rows as numbers: per learner configuration x task the measures' mean and
        interval, ``diff_*``, ``p_vs_reference``, ``tost_p``, ``verdict`` (better / worse / equivalent
        ±m / inconclusive: run N seeds to decide) and ``seeds_to_decide`` (``report/verdicts.py``)."""
        runs = self.run_table()
        self._check_reference(runs, reference)
        if runs.tuned:
            from bpbench.experiments.report.tuning import tuned_summary

            return tuned_summary(runs, reference or self.reference or reference_of(self.store), p).rows
        return summarize(runs, reference or self.reference, p).rows

    def table(
        self,
        format: str = "text",
        reference: str | None = None,
        p: str = "holm",
        columns: list[str] | None = None,
        tuning: bool = False,
    ) -> str:
        """The summary table, exactly as ``bpbench table OUT --format FORMAT [--reference LABEL]
        [--p holm|raw] [--columns KEY,...] [--tuning]`` prints it: text | markdown | latex | html | csv;
        p-values against the learner label ``reference`` (default: ``self.reference``),
        Holm-adjusted over the table (``p = "raw"``: unadjusted). A tuned study's table has one row
        per learner x task for its final runs; ``tuning``: every trial instead."""
        runs = self.run_table()
        self._check_reference(runs, reference)
        if columns:
            check_columns(columns, runs.tuned)
        from bpbench.experiments.report.tuning import render_trials, trials, tuned_summary

        if tuning:
            return render_trials(trials(runs), format)
        if runs.tuned:
            chosen = reference or self.reference or reference_of(self.store)
            return render(tuned_summary(runs, chosen, p), format, columns)
        return render(summarize(runs, reference or self.reference, p), format, columns)

    def score(self, format: str = "text", reference: str | None = None, measure: str = "flops") -> str:
        """The across-task score table of ``bpbench table OUT --score [--measure M]`` (a tuned study:
        its final runs only)."""
        from bpbench.experiments.report.score_table import render_score, score

        runs = self.run_table()
        self._check_reference(runs, reference)
        return render_score(score(runs, reference or self.reference, measure), format)

    def _check_reference(self, table: RunTable, reference: str | None) -> None:
        if reference is not None:
            labels = sorted({*table.runs.get("learner", []), *table.failed.get("learner", [])})
            if reference not in labels:
                raise ConfigError(
                    f"--reference {reference!r}: no run in {str(self.out)!r} has that learner label; "
                    f"allowed: {', '.join(labels)}"
                )

    def plot(self, out: str | Path | None = None) -> tuple[list[Path], dict[str, str]]:
        """Draw every figure the results support as PDF and PNG into ``out`` (default
        OUT/figures); returns (files written, figure name -> why it was not drawn)."""
        from bpbench.experiments.report.figures import figure_data, save_all
        from bpbench.experiments.report.tuning_figures import tuning_figures

        folder = Path(out) if out is not None else self.out / "figures"
        table = self.run_table()
        return save_all(figure_data(table), folder, extra=tuning_figures(table))

    def report(self, out: str | Path | None = None) -> Path:
        """Write the self-contained HTML report to ``out`` (default OUT/report.html); returns its path."""
        from bpbench.experiments.report.html import write_report

        return write_report(self.out, Path(out) if out is not None else self.out / "report.html")

    def __repr__(self) -> str:
        table = self.run_table()
        return f"Results({str(self.out)!r}: {len(table.runs) + len(table.failed)} run(s), {len(table.failed)} failed)"


def load(out: str | Path) -> Results:
    """The results in the folder ``out`` (the ``--out`` of ``bpbench run``); a ConfigError
    if it is not a results folder."""
    return Results(results_folder(out))
