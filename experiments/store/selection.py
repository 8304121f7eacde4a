"""The validation score a tuned study selects by, from a stored run's metric rows (never the test split).

``val_score(store, run_id, select)``: "val_accuracy" is the final evaluated epoch's validation
accuracy; "best_val_accuracy" the best over evaluated epochs. None when the run failed, has no
validation rows, or diverged (NaN). ``at_best_val(rows)``: the test accuracy at the epoch of the best
validation accuracy (what a final run reports under "best_val_accuracy": that epoch's weights).
"""

from __future__ import annotations

import math

import pandas as pd

from bpbench.experiments.store.run_store import RunStore


def _accuracy(store: RunStore, run_id: str) -> pd.DataFrame | None:
    meta = store.read_meta(store.meta_path(run_id))
    if meta is None or meta.get("status") != "ok":
        return None
    rows = store.run_metrics(run_id, ("accuracy",))
    if rows is None:  # compacted: its rows are in the dataset
        rows = store.dataset.metrics([run_id], ("accuracy",))
    return rows[rows["layer"] == ""] if not rows.empty else None


def val_score(store: RunStore, run_id: str, select: str) -> float | None:
    """The run's selection score under ``select`` (val_accuracy | best_val_accuracy), or None."""
    rows = _accuracy(store, run_id)
    if rows is None:
        return None
    val = rows[rows["split"] == "val"].sort_values("epoch")
    if val.empty:
        return None
    value = float(val["value"].max() if select == "best_val_accuracy" else val["value"].iloc[-1])
    return None if math.isnan(value) else value


def test_at_best_val(store: RunStore, run_id: str) -> float:
    """Test accuracy at the first epoch of the best validation accuracy (NaN when either is missing)."""
    rows = _accuracy(store, run_id)
    if rows is None:
        return math.nan
    wide = rows.pivot_table(index="epoch", columns="split", values="value", aggfunc="last")
    if "val" not in wide or "test" not in wide or wide["val"].dropna().empty:
        return math.nan
    # one cell of a unique (epoch) index; pandas-stubs types .loc[label, column] as a Series
    return float(wide.loc[wide["val"].idxmax(), "test"])  # type: ignore[arg-type,index]
