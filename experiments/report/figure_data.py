"""What the figures draw from, read when a figure asks for it: memory grows with what one figure shows.

``FigureData`` holds

- ``runs``: one row per verdict run (``RunTable.verdict``: never a tuning trial), its info and final
  measures (each run's stored record, so a sweep of 20,000 runs is 20,000 rows, not its millions
  of metric rows);
- ``rows(metrics, run_ids)``: the tidy rows (``RunTable.tidy``) of those metrics of those runs only,
  read from the folder when a figure asks: learning curves read their chosen configurations'
  accuracy, a heatmap its learner's gradient norms on one task, and each is freed after drawing;
- ``curves()``: per run and evaluation, validation accuracy and the cost spent by then, the same
  time-to-target curves the score table reads (``RunTable.curves``: one cached DuckDB scan);
- ``targets`` and ``reference``: the studies' ``[targets]`` and the label that sets the others.

``from_table(table)`` reads a run table; ``from_tidy(data)`` wraps a tidy table already in
memory (a script's, a test's). Both give the same rows in the same order, so the same figures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import pandas as pd

from bpbench.experiments.plan.study import REFERENCE_LABEL
from bpbench.experiments.report.scoring import curves_from_tidy, study_targets
from bpbench.experiments.report.summary import main_reference, per_run, reference_of
from bpbench.experiments.store.curves import CURVE_COLUMNS
from bpbench.experiments.store.run_table import RunTable

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
    def from_tidy(
        cls, data: pd.DataFrame, targets: Mapping[str, float] | None = None, reference: str = REFERENCE_LABEL
    ) -> FigureData:
        """The figure data of a tidy table in memory (a script's, a test's), with the studies'
        ``targets`` and the ``reference`` label that sets the others."""

        def read(metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
            if data.empty:
                return data
            return data[data["metric"].isin(metrics) & data["run_id"].isin(set(run_ids))]

        empty = pd.DataFrame(columns=[*CURVE_COLUMNS, "task"])
        return cls(
            runs=per_run(data),
            read_rows=read,
            read_curves=lambda: curves_from_tidy(data) if not data.empty else empty,
            targets=dict(targets or {}),
            reference=reference,
        )

    @classmethod
    def from_table(cls, table: RunTable) -> FigureData:
        """The figure data of a run table's verdict runs (a tuned study: its final runs only): their
        records now, their rows when asked, the table's cached curves."""
        verdict = table.verdict()

        def read(metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
            return verdict.tidy(metrics, run_ids)

        return cls(
            runs=verdict.runs,
            read_rows=read,
            read_curves=verdict.curves,
            targets=study_targets(table.store),
            reference=main_reference(reference_of(table.store)),
        )
