"""A run's final measurements: what the summary table needs from its tidy metric rows.

``measures(rows)`` reduces tidy rows (run_id, epoch, step, split, metric, layer, value) of one
or more runs to one row per run, a column per record of the measurement catalog
(``run/catalog.py``: final test/val accuracy, train-test gap, train seconds, training FLOPs and
samples, synaptic operations and energy per sample, peak memory, the geometric mean of the
first/last-layer gradient ratio, the mean alignment cosine and projection coefficient;
NaN = not recorded). The reduction works run by run, so its numbers are the same whether it
is given one run's rows or many runs' rows at once.

The store computes it when it writes a run and keeps it in the run's ``meta.json`` under
``"measures"`` (``{"version": VERSION, "values": {...}}``, keyed by each measure's public
``column`` name), so the table reads one small record per run instead of every metric row.
``VERSION`` changes whenever the catalog's reductions change; a stored record of another
version (or none, in folders written before it existed) is recomputed from the run's metric
rows, never used.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pandas as pd

from bpbench.experiments.run import catalog

VERSION = 2  # 2: the projection coefficient; values keyed by public column names


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
    """The measures stored in ``meta`` by name (null back to NaN), or None when absent or of another version."""
    stored = meta.get("measures")
    if not isinstance(stored, dict) or stored.get("version") != VERSION:
        return None
    values = stored["values"]
    if not isinstance(values, dict) or any(m.column not in values for m in catalog.CATALOG):
        return None  # recomputed from the rows, like a record of another version
    return {
        m.name: (
            bool(values[m.column]) if m.flag else math.nan if values[m.column] is None else float(values[m.column])
        )
        for m in catalog.CATALOG
    }
