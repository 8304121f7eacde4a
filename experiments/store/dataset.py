"""The compacted form of a results folder: a partitioned parquet dataset (``bpbench compact``).

Layout under the results folder (hive partitions: ``study=NAME/task_label=LABEL/label=LABEL``)::

    dataset/runs/study=S/task_label=T/label=L/<batch>-<n>.parquet     one row per run: run_id, status,
        end_time, batch, the run's info (learner, configuration, task, seed, ...) and final measures
        (test_accuracy, ...) as columns, named as ``store/describe.py`` says, and ``meta`` (meta.json's text)
    dataset/metrics/study=S/task_label=T/label=L/<batch>-<n>.parquet  tidy metric rows: run_id, epoch, step,
        split, metric, layer, value, configuration, batch
    dataset/STAMP                                                 changes with every compaction

Part files are immutable: a compaction stages new ones under ``dataset/.staging-*`` and renames
each into place (atomic), so a reader never sees half a file. ``batch`` names the compaction
that wrote a row. Should a run be in the dataset twice (a run re-run after it was compacted
as failed, or a compaction that stopped between steps), the copy with the later end time
counts, and its metric rows are those of its batch. pandas reads either half directly
(``pd.read_parquet("DIR/dataset/runs")``), DuckDB too
(``SELECT * FROM read_parquet('DIR/dataset/runs/**/*.parquet', hive_partitioning = true)``);
a reader that may run during a compaction keeps, per run_id, the row with the latest end_time.

A part file that cannot be read, or that lies under a symbolic link, is named in a ``ResultsWarning``
and skipped.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bpbench.experiments.store.safe_paths import unsafe_link

PARTITIONS = ("study", "task_label", "label")  # datasets compacted before 2026-12 used study/task/learner
INDEX_COLUMNS = ["run_id", "status", "end_time", "batch"]
METRIC_COLUMNS = ["run_id", "epoch", "step", "split", "metric", "layer", "value"]


class ResultsWarning(UserWarning):
    """A run file or part file could not be read and was skipped (the message names it)."""


def warn(message: str) -> None:
    warnings.warn(message, ResultsWarning, stacklevel=3)


class Dataset:
    """Reads the compacted dataset under ``root/dataset`` (absent: no compacted runs)."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "dataset"
        self._index: pd.DataFrame | None = None
        self._index_stamp: str | None = None

    def stamp(self) -> str | None:
        """The current compaction stamp (None: never compacted)."""
        path = self.dir / "STAMP"
        if unsafe_link(self.dir.parent, path) is not None:  # never read out of the folder: no stamp, no cache
            return None
        try:
            return path.read_text()
        except FileNotFoundError:
            return None

    def parts(self, half: str) -> list[Path]:
        """The part files of ``half`` ("runs" or "metrics"), staging folders left out; a part under a
        symbolic link (``dataset/`` itself, a partition folder, the file) is warned about and never
        read, so neither a reader nor ``compact`` follows it out of the folder."""
        base = self.dir / half
        if self.dir.is_symlink():
            warn(f"skipped {self.dir}: a symbolic link (the dataset is read only inside the results folder)")
            return []
        if not base.is_dir():
            return []
        found = [p for p in base.glob("*/*/*/*.parquet") if not p.name.startswith((".", "_"))]
        linked = {p for p in found if unsafe_link(self.dir, p) is not None}
        for path in sorted(linked):
            warn(f"skipped {path}: it is or lies under a symbolic link {unsafe_link(self.dir, path)}")
        return sorted(set(found) - linked)

    def _read(self, path: Path, columns: list[str] | None = None, filters: Any = None) -> pa.Table | None:
        try:
            return pq.read_table(path, columns=columns, filters=filters, partitioning=None)
        except (OSError, pa.ArrowException) as exc:
            warn(f"skipped {path}: unreadable part file ({type(exc).__name__}: {exc})")
            return None

    def copies(self) -> pd.DataFrame:
        """Every copy of every compacted run: run_id, status, end_time, batch, part (its runs part file)."""
        frames = []
        for path in self.parts("runs"):
            table = self._read(path, INDEX_COLUMNS)
            if table is not None:
                frames.append(table.to_pandas().assign(part=str(path)))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*INDEX_COLUMNS, "part"])

    def index(self) -> pd.DataFrame:
        """run_id -> (status, end_time, batch, part): the one counting copy of each compacted run
        (the latest end time, then the latest batch). Cached until the dataset's stamp changes
        (every compaction changes it)."""
        stamp = self.stamp()
        if self._index is not None and stamp == self._index_stamp:
            return self._index
        index = self.copies().sort_values(["run_id", "end_time", "batch"]).drop_duplicates("run_id", keep="last")
        self._index, self._index_stamp = index.set_index("run_id"), stamp
        return self._index

    def metas(self, exclude: set[str] | frozenset[str] = frozenset()) -> Iterator[dict[str, Any]]:
        """The meta of every compacted run not in ``exclude``, one part file at a time."""
        index = self.index()
        for part, rows in index[~index.index.isin(exclude)].groupby("part", sort=True):
            path = Path(cast(str, part))  # the part column holds file paths (str)
            table = self._read(path, ["run_id", "batch", "meta"])
            if table is None:
                continue
            wanted = set(zip(rows.index, rows["batch"]))
            for run_id, batch, text in zip(*(table.column(c).to_pylist() for c in ("run_id", "batch", "meta"))):
                if (run_id, batch) in wanted:
                    wanted.discard((run_id, batch))
                    meta = self._meta(path, text)
                    if meta is not None:
                        yield meta

    @staticmethod
    def _meta(part: Path, text: Any) -> dict[str, Any] | None:
        """One compacted run's meta from its part file's ``meta`` text; None (warned) when unusable."""
        from bpbench.experiments.store.validate import meta_problem  # (validate reads records, not this module)

        try:
            meta = json.loads(text)
        except (TypeError, ValueError, RecursionError) as exc:
            warn(f"skipped a run in {part}: unreadable meta ({type(exc).__name__}: {str(exc)[:200]})")
            return None
        problem = meta_problem(meta)
        if problem is not None:
            warn(f"skipped a run in {part}: {problem}")
            return None
        return meta

    def metrics(self, run_ids: list[str] | None = None, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Tidy rows of compacted runs (all, or ``run_ids``), optionally only the ``metrics`` named."""
        index = self.index()
        if run_ids is not None:
            index = index[index.index.isin(run_ids)]
        if index.empty:
            return pd.DataFrame(columns=METRIC_COLUMNS)
        keep = pa.array([f"{r}/{b}" for r, b in zip(index.index, index["batch"])])
        frames = []
        for path in self.parts("metrics"):
            filters = pc.field("run_id").isin(pa.array(list(index.index)))
            if metrics is not None:
                filters &= pc.field("metric").isin(list(metrics))
            table = self._read(path, [*METRIC_COLUMNS, "batch"], filters)
            if table is None or table.num_rows == 0:
                continue
            key = pc.binary_join_element_wise(table["run_id"].cast(pa.string()), table["batch"].cast(pa.string()), "/")
            counting = pc.is_in(key, keep)
            frames.append(table.filter(counting).select(METRIC_COLUMNS).to_pandas())  # the counting copy's rows
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=METRIC_COLUMNS)
