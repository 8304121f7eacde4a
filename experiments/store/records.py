"""A run's final measurements: what the summary table needs from its tidy metric rows.

``measures(rows)`` reduces tidy rows (run_id, epoch, step, split, metric, layer, value) of one
or more runs to one row per run: final test/val accuracy, train-test gap, train seconds,
training FLOPs and samples, synaptic operations and energy per sample, peak memory, the
geometric mean of the first/last-layer gradient ratio and the mean alignment cosine
(NaN = not recorded). The reduction works run by run, so its numbers are the same whether
it is given one run's rows or many runs' rows at once.

The store computes it when it writes a run and keeps it in the run's ``meta.json`` under
``"measures"`` (``{"version": VERSION, "values": {...}}``), so the table reads one small
record per run instead of every metric row. ``VERSION`` changes whenever this reduction
changes; a stored record of another version (or none, in folders written before it existed)
is recomputed from the run's metric rows, never used.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

VERSION = 1
NAMES = ("test_acc", "gap", "val_acc", "train_s", "flops", "samples", "synops", "energy", "peak_mem",
         "grad_ratio", "alignment", "cost_from_flops")
# the metrics the reduction reads (figures read grad_norm and grad_alignment besides)
METRICS = ("accuracy", "train_seconds", "train_flops", "train_samples", "synops_per_sample", "energy_per_sample_j",
           "peak_memory_bytes", "synops_from_flops", "grad_norm_ratio", "grad_alignment_mean")


def _geometric_mean(values: pd.Series) -> float:
    arr = values.to_numpy(dtype=float)
    if (arr < 0).any():
        raise ValueError(f"grad_norm_ratio has negative values {arr[arr < 0][:3]}: geometric mean undefined")
    if (arr == 0).any():  # a first layer whose update vanished exactly: the geometric mean is 0
        return 0.0
    return float(np.exp(np.log(arr).mean()))


def measures(data: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the tidy rows ``data`` (index run_id, columns ``NAMES``)."""
    last_epoch = data.groupby("run_id")["epoch"].transform("max")
    final = data[(data["epoch"] == last_epoch) & (data["layer"] == "")]
    wide = final.pivot_table(index="run_id", columns=["split", "metric"], values="value", aggfunc="last")
    wide.columns = [f"{s}_{m}" for s, m in wide.columns]

    def col(name: str) -> pd.Series:
        return wide[name] if name in wide else pd.Series(math.nan, index=wide.index)

    out = pd.DataFrame({
        "test_acc": col("test_accuracy"), "gap": col("train_accuracy") - col("test_accuracy"),
        "val_acc": col("val_accuracy"),  # chooses among configurations (figures); test is only reported
        "train_s": col("train_train_seconds"), "flops": col("train_train_flops"),
        "samples": col("train_train_samples"), "synops": col("test_synops_per_sample"),
        "energy": col("test_energy_per_sample_j"), "peak_mem": col("train_peak_memory_bytes"),
    })
    ratio = data[data["metric"] == "grad_norm_ratio"].groupby("run_id")["value"].apply(_geometric_mean)
    align = data[data["metric"] == "grad_alignment_mean"].groupby("run_id")["value"].mean()  # exact layers left out
    out["grad_ratio"] = ratio.reindex(out.index)
    out["alignment"] = align.reindex(out.index)
    out["cost_from_flops"] = col("test_synops_from_flops") == 1.0
    return out


def record(rows: pd.DataFrame) -> dict[str, Any] | None:
    """The ``meta["measures"]`` record of one run's rows (None when it has no rows): NaN as null."""
    if rows.empty:
        return None
    (values,) = measures(rows).to_dict("records")
    return {"version": VERSION, "values": {k: _plain(v) for k, v in values.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    value = float(value)
    return None if math.isnan(value) else value


def from_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The measures stored in ``meta`` (null back to NaN), or None when absent or of another version."""
    stored = meta.get("measures")
    if not isinstance(stored, dict) or stored.get("version") != VERSION:
        return None
    values = stored["values"]
    return {name: (bool(values[name]) if name == "cost_from_flops" else
                   math.nan if values[name] is None else float(values[name])) for name in NAMES}
