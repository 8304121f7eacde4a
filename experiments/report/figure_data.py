"""What the figures draw from, read when a figure asks for it: memory grows with what one figure shows.

``FigureData`` holds

- ``runs``: one row per completed run, its info and final measures (``table.runs_of``: each
  run's stored record, so a sweep of 20,000 runs is 20,000 rows, not its millions of metric rows);
- ``rows(metrics, run_ids)``: the tidy rows (``table.tidy``) of those metrics of those runs only,
  read from the folder when a figure asks: learning curves read their chosen configurations'
  accuracy, a heatmap its learner's gradient norms on one task, and each is freed after drawing;
- ``curves()``: per run and evaluation, validation accuracy and the cost spent by then, the same
  time-to-target curves the score table reads (``scoring.store_curves``, through DuckDB);
- ``targets`` and ``reference``: the studies' ``[targets]`` and the label that sets the others.

``from_store(store)`` reads a results folder; ``from_tidy(data)`` wraps a tidy table already in
memory (a script's, a test's). Both give the same rows in the same order, so the same figures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import pandas as pd

from bpbench.experiments.plan.study import REFERENCE_LABEL
from bpbench.experiments.report.scoring import CURVE_COLUMNS, curves_from_tidy, store_curves, study_targets
from bpbench.experiments.report.table import main_reference, per_run, reference_of, runs_of, tidy
from bpbench.experiments.store import records as run_measures
from bpbench.experiments.store.run_store import RunStore

RowReader = Callable[[tuple[str, ...], Collection[str]], pd.DataFrame]


@dataclass(frozen=True)
class FigureData:
    """One row per run, and readers of the rows a figure draws (see the module doc)."""

    runs: pd.DataFrame
    read_rows: RowReader
    read_curves: Callable[[], pd.DataFrame]
    targets: Mapping[str, float] = field(default_factory=dict)
    reference: str = REFERENCE_LABEL

    def rows(self, metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
        """Tidy rows of ``metrics`` of the runs ``run_ids``, in run id order, with their run's info."""
        return self.read_rows(metrics, run_ids).reset_index(drop=True)

    @functools.cached_property
    def curves(self) -> pd.DataFrame:
        """Time-to-target curves of every run (``scoring.CURVE_COLUMNS`` and task), by run and epoch."""
        return self.read_curves()

    @classmethod
    def from_tidy(cls, data: pd.DataFrame) -> FigureData:
        """The figure data of a tidy table in memory (``targets``/``reference`` from ``data.attrs``)."""

        def read(metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
            if data.empty:
                return data
            return data[data["metric"].isin(metrics) & data["run_id"].isin(set(run_ids))]

        empty = pd.DataFrame(columns=[*CURVE_COLUMNS, "task"])
        return cls(
            runs=per_run(data),
            read_rows=read,
            read_curves=lambda: curves_from_tidy(data) if not data.empty else empty,
            targets=dict(data.attrs.get("targets", {})),
            reference=data.attrs.get("reference", REFERENCE_LABEL),
        )

    @classmethod
    def from_store(cls, store: RunStore) -> FigureData:
        """The figure data of a results folder: the runs' records now, their rows when asked."""
        runs, _ = runs_of(store)
        info = runs[[c for c in runs.columns if c not in run_measures.names()]] if not runs.empty else runs

        def read(metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
            chosen = info[info["run_id"].isin(set(run_ids))] if not info.empty else info
            return tidy(store, metrics, chosen) if not chosen.empty else pd.DataFrame()

        def curves() -> pd.DataFrame:
            if runs.empty:
                return pd.DataFrame(columns=[*CURVE_COLUMNS, "task"])
            out = store_curves(store, runs["run_id"]).sort_values(["run_id", "epoch"], ignore_index=True)
            return out.assign(task=out["run_id"].map(runs.set_index("run_id")["task"]))

        return cls(
            runs=runs,
            read_rows=read,
            read_curves=curves,
            targets=study_targets(store),
            reference=main_reference(reference_of(store)),
        )


def figure_input(data: FigureData | pd.DataFrame) -> FigureData:
    """``data`` as ``FigureData`` (a tidy table is wrapped with ``from_tidy``)."""
    return data if isinstance(data, FigureData) else FigureData.from_tidy(data)
