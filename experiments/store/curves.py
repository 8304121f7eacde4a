"""Per-epoch curves of runs, read through DuckDB in one scan of the run folders and the dataset.

``scan_curves(store, run_ids)``: one row per run and evaluation (``CURVE_COLUMNS``): run_id,
epoch, validation and test accuracy, and the training cost spent by then (flops, seconds,
samples). Only those rows are read, from the runs' folders (a folder counts over the dataset)
and the compacted dataset's counting copies, in bounded memory: a sweep of 20,000 runs is
~420,000 small rows. What time to target, a tuned study's selection scores and the figures'
cost curves are computed from (``store/run_table.py`` caches it once per command).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import pandas as pd

from bpbench.experiments.store.dataset import warn
from bpbench.experiments.store.parquet_query import query_files
from bpbench.experiments.store.run_store import RunStore

CURVE_COLUMNS = ["run_id", "epoch", "val_acc", "test_acc", "flops", "seconds", "samples"]
DUCKDB_MEMORY = "512MB"

_SELECT = """
SELECT run_id, epoch,
  max(value) FILTER (WHERE split = 'val' AND metric = 'accuracy') AS val_acc,
  max(value) FILTER (WHERE split = 'test' AND metric = 'accuracy') AS test_acc,
  max(value) FILTER (WHERE metric = 'train_flops') AS flops,
  max(value) FILTER (WHERE metric = 'train_seconds') AS seconds,
  max(value) FILTER (WHERE metric = 'train_samples') AS samples
FROM {source}
WHERE (layer = '' OR layer IS NULL)
  AND (metric = 'accuracy' OR metric IN ('train_flops', 'train_seconds', 'train_samples'))
GROUP BY run_id, epoch
"""
_COMPACTED = (
    "(SELECT m.* FROM read_parquet($files, union_by_name = true) m "
    "JOIN keep k ON m.run_id = k.run_id AND m.batch = k.batch)"
)


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (followed through any link) lies inside ``root``: never read out of the folder."""
    return path.resolve().is_relative_to(root)


def _folder_files(store: RunStore, ids: set[str]) -> list[str]:
    """The ``metrics.parquet`` of the run folders of ``ids`` that lie inside the folder."""
    root, files = store.root.resolve(), []
    for path in sorted(store.runs_dir.glob("*/metrics.parquet")) if store.runs_dir.is_dir() else []:
        if path.parent.name not in ids:
            continue
        if _inside(path, root):
            files.append(str(path))
        else:
            warn(f"skipped {path}: it links out of the results folder (its run's curves are n/a)")
    return files


def scan_curves(store: RunStore, run_ids: Iterable[str]) -> pd.DataFrame:
    """``CURVE_COLUMNS`` of the runs ``run_ids``, by run and epoch (see the module docstring)."""
    ids = set(pd.Series(list(run_ids), dtype=str))
    files = _folder_files(store, ids)
    in_folders = {Path(f).parent.name for f in files}
    index = store.dataset.index()
    counting = index[index.index.isin(ids) & ~index.index.isin(in_folders)]
    root = store.root.resolve()
    parts = [str(p) for p in store.dataset.parts("metrics") if _inside(p, root)] if len(counting) else []
    keep = pd.DataFrame({"run_id": counting.index.astype(str), "batch": counting["batch"].astype(str)})
    con = duckdb.connect(config={"memory_limit": DUCKDB_MEMORY, "threads": 2})
    try:
        frames = []
        if files:
            source = "read_parquet($files, union_by_name = true)"
            frames.append(query_files(con, _SELECT.format(source=source), files))
        if parts:
            con.register("keep", keep)
            frames.append(query_files(con, _SELECT.format(source=_COMPACTED), parts))
    finally:
        con.close()
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["epoch"] = out["epoch"].astype(int)
    return out[CURVE_COLUMNS].sort_values(["run_id", "epoch"], ignore_index=True)
