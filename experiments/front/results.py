"""``Results``: a study's results folder as Python objects (what ``bpbench.run`` and
``bpbench.load`` return).

Everything is read from the folder when asked for, so a folder that another process is
still filling shows the runs finished so far; the folder itself stays the record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.report.table import check_columns, reference_of, render, summarize, tidy
from bpbench.experiments.store.describe import public, varied_label
from bpbench.experiments.store.run_store import RunStore

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
    "status",
    "error",
    "test_accuracy",
    "train_seconds",
    "train_flops",
    "stopped_by",
]


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

    @property
    def summary(self) -> pd.DataFrame:
        """One row per finished run, failed ones included with their error.

        Columns (named as in every view: ``store/describe.py``): run_id, label (the study's name
        for the learner configuration), configuration (the grid values that vary), learner
        (registered name), task (registered name),
        task_label, seed (seed index), status ("ok" | "failed"), error, test_accuracy,
        train_seconds, train_flops, stopped_by, then the rest of each run's summary
        (epochs_completed, steps, peak_memory_bytes, ...), and ``unmeasured``: measurement ->
        why it is n/a for the run, and its time to target (``target``, ``reached``, and the epochs,
        training FLOPs, seconds and samples at the first evaluation that reached it: ``ttt_epochs``,
        ``ttt_flops``, ``ttt_seconds``, ``ttt_samples``; NaN when not reached; a failed run: NaN).
        Missing values are NaN/None.
        """
        rows = []
        for meta in self.store.iter_metas():
            spec, summary = meta["spec"], meta.get("summary", {})
            row: dict[str, Any] = {
                "run_id": meta["run_id"],
                "label": spec["label"],
                "configuration": varied_label(spec),
                "learner": spec["learner"],
                "task": spec["task"],
                "task_label": spec["task_label"],
                "seed": spec["seed_index"],
                "status": meta["status"],
                "error": meta.get("error"),
            }
            row.update({k: summary.get(k, math.nan) for k in SUMMARY_COLUMNS[9:]})
            row.update({k: v for k, v in sorted(summary.items()) if k not in row})
            row["unmeasured"] = meta.get("unmeasured", {})
            rows.append(row)
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=SUMMARY_COLUMNS)
        from bpbench.experiments.report.score_table import run_times

        frame = frame.merge(run_times(self.store, self.reference), on="run_id", how="left")
        return frame.sort_values(["task_label", "label", "configuration", "seed"], kind="stable").reset_index(drop=True)

    @property
    def metrics(self) -> pd.DataFrame:
        """The tidy rows of every completed run (run_id, epoch, step, split, metric, layer,
        value) joined with what the run was (label, learner, configuration, task, task_label, seed,
        model, budget), named as in every view (``store/describe.py``)."""
        return public(tidy(self.store))

    @property
    def tuning(self) -> pd.DataFrame:
        """A tuned study's trials, one row per trial (its runs: one per tuning seed): learner, task,
        repeat, trial, run_id (its first seed's), run_ids, seeds, status ("pruned at epoch e"), pruned,
        config, options (searched option -> value), val_score (mean over its seeds: what selection
        used), test_acc (reported only), train_flops, wall_seconds, rank (1 = best validation score of
        its learner x task x repeat), chosen. Empty for a plain study."""
        from bpbench.experiments.report.tuning import trials

        return trials(self.store)

    def comparisons(self, reference: str | None = None, p: str = "holm") -> pd.DataFrame:
        """The summary table's rows as numbers: per learner configuration x task the measures' mean and
        interval, ``diff_*``, ``p_vs_reference``, ``tost_p``, ``verdict`` (better / worse / equivalent
        ±m / inconclusive: run N seeds to decide) and ``seeds_to_decide`` (``report/verdicts.py``)."""
        self._check_reference(reference)
        return summarize(self.store, reference or self.reference, p)

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
        self._check_reference(reference)
        if columns:
            check_columns(columns)
        from bpbench.experiments.report.tuning import render_trials, tags, tuned_summary

        if tuning:
            return render_trials(self.tuning, format)
        if tags(self.store):
            chosen = reference or self.reference or reference_of(self.store)
            return render(tuned_summary(self.store, chosen, p), format, columns)
        return render(summarize(self.store, reference or self.reference, p), format, columns)

    def score(self, format: str = "text", reference: str | None = None, measure: str = "flops") -> str:
        """The across-task score table of ``bpbench table OUT --score [--measure M]``."""
        from bpbench.experiments.report.score_table import render_score, score

        self._check_reference(reference)
        return render_score(score(self.store, reference or self.reference, measure), format)

    def _check_reference(self, reference: str | None) -> None:
        if reference is not None:
            labels = sorted({m["spec"]["label"] for m in self.store.iter_metas()})
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
        return save_all(figure_data(self.store), folder, extra=tuning_figures(self.store))

    def report(self, out: str | Path | None = None) -> Path:
        """Write the self-contained HTML report to ``out`` (default OUT/report.html); returns its path."""
        from bpbench.experiments.report.html import write_report

        return write_report(self.out, Path(out) if out is not None else self.out / "report.html")

    def __repr__(self) -> str:
        statuses = [m["status"] for m in self.store.iter_metas()]
        failed = sum(status != "ok" for status in statuses)
        return f"Results({str(self.out)!r}: {len(statuses)} run(s), {failed} failed)"


def load(out: str | Path) -> Results:
    """The results in the folder ``out`` (the ``--out`` of ``bpbench run``); a ConfigError
    if it is not a results folder."""
    return Results(results_folder(out))
