"""A run's final measurements: what the summary table needs from its tidy metric rows.

``measures(rows)`` reduces tidy rows (run_id, epoch, step, split, metric, layer, value) of one
or more runs to one row per run, a column per record of the measurement catalog
(``plan/catalog.py``: final test/val accuracy, train-test gap, train seconds, training FLOPs and
samples, synaptic operations and energy per sample, peak memory, the geometric mean of the
first/last-layer gradient ratio, the mean alignment cosine and projection coefficient;
NaN = not recorded). The reduction works run by run, so its numbers are the same whether it
is given one run's rows or many runs' rows at once.

The store computes it when it writes a run and keeps it in the run's ``meta.json`` under
``"measures"`` (``{"version": VERSION, "values": {...}}``, keyed by each measure's public
``column`` name), so the table reads one small record per run instead of every metric row.
Each measure is stored there once: ``summary`` in meta.json holds what is not a measure
(epochs completed, steps, stopped_by, chance accuracy, ...).

Layouts read (``from_record``, ``summary``): ``VERSION`` 3 (this one); 2, the previous release's,
whose records hold the same values under the same names and whose ``summary`` repeats test
accuracy, train seconds, training FLOPs and peak memory (``summary`` drops those copies: the
record's value is the one every view shows); and folders written before records existed (no
``measures``: computed from the run's metric rows by ``store/run_table.py``). A record of any
other version is refused by ``validate.meta_problem`` (the run is skipped with a warning).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pandas as pd

from bpbench.experiments.plan import catalog

VERSION = 3  # 3: each measure stored once (not repeated in meta.json's summary)
READ_VERSIONS = (2, VERSION)  # 2: the previous release's layout (values keyed by public column names)


def names() -> tuple[str, ...]:
    """The per-run measures, in catalog order (read at call time: a test may extend the catalog)."""
    return tuple(m.name for m in catalog.CATALOG)


NAMES = names()  # the built-in catalog's


def columns() -> tuple[str, ...]:
    """The keys of a stored record: each measure's public column name, in catalog order."""
    return tuple(m.column for m in catalog.CATALOG)


# the metrics the reduction reads (figures read grad_norm, grad_alignment and grad_projection besides)
METRICS = catalog.stored_metrics()


def measures(data: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the tidy rows ``data`` (index run_id, columns ``NAMES``)."""
    last_epoch = data.groupby("run_id")["epoch"].transform("max")
    final = data[(data["epoch"] == last_epoch) & (data["layer"] == "")]
    wide = final.pivot_table(index="run_id", columns=["split", "metric"], values="value", aggfunc="last")
    wide.columns = [f"{s}_{m}" for s, m in cast(pd.MultiIndex, wide.columns)]  # (split, metric) pairs
    return pd.DataFrame({m.name: m.reduce(data, wide) for m in catalog.CATALOG}, index=wide.index)


def record(rows: pd.DataFrame) -> dict[str, Any] | None:
    """The ``meta["measures"]`` record of one run's rows (None when it has no rows): NaN as null."""
    if rows.empty:
        return None
    values = measures(rows).to_dict("records")[0]
    return {"version": VERSION, "values": {m.column: _plain(values[m.name]) for m in catalog.CATALOG}}


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    value = float(value)
    return None if math.isnan(value) else value


def from_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The measures stored in ``meta`` by name (null back to NaN), or None when it holds no record
    (a folder written before records existed: its measures are computed from its rows)."""
    stored = meta.get("measures")
    if stored is None:
        return None
    values = stored["values"]  # validate.meta_problem checked its version and values
    return {
        m.name: (
            bool(values.get(m.column))
            if m.flag
            else math.nan
            if values.get(m.column) is None
            else float(values[m.column])
        )
        for m in catalog.CATALOG
    }


def stored(meta: dict[str, Any], column: str) -> Any:
    """One measure of a run by its public ``column`` name, as its meta stores it (None when absent): the
    record's value; a meta without a record (written before records existed) has it in its summary."""
    record = meta.get("measures")
    if isinstance(record, dict) and isinstance(record.get("values"), dict):
        return record["values"].get(column)
    return (meta.get("summary") or {}).get(column)


def summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The run's ``summary`` without the measures its record holds (the previous layout repeated
    four of them there: the record's values are the ones read)."""
    stored = meta.get("summary") or {}
    if meta.get("measures") is None:  # no record: the summary's copies are the only stored values
        return dict(stored)
    measured = set(columns())
    return {key: value for key, value in stored.items() if key not in measured}
