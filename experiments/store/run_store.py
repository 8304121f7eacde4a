"""The results store: one folder per run, written atomically, so studies resume and merge.

Layout under a study's output folder::

    runs/<run_id>/metrics.parquet   tidy rows: run_id, epoch, step, split, metric, layer, value
    runs/<run_id>/meta.json         spec, seed, status, error, git commit, versions, hardware, times
    claims/<run_id>/<generation>    while a run is executing: which driver holds it (experiments/claims.py)

``metrics.parquet`` is written before ``meta.json``; a run counts as complete only when its
meta says ``"status": "ok"``. Both files are written to a temporary name and renamed.
``meta.json`` also holds the run's final measures (``experiments.run_measures``), computed
from the rows written beside it, so the table reads no metric rows.
Folders from several studies or machines can be merged by copying ``runs/`` together.

``bpbench compact`` moves finished runs into a partitioned parquet dataset
(``experiments.dataset``); every read here sees both forms, a run once: its folder when it
has one (the newer copy), else the dataset's. Folders are listed before the dataset is read,
so a run moved by a compaction meanwhile is found in the dataset. A run file that cannot be
read is named in a ``ResultsWarning`` and skipped.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from bpbench.experiments.store import records as run_measures
from bpbench.experiments.store.dataset import METRIC_COLUMNS as COLUMNS
from bpbench.experiments.store.dataset import Dataset, warn


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RunStore:
    """Reads and writes the runs under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.dataset = Dataset(self.root)

    def meta_path(self, run_id: str) -> Path:
        return self.runs_dir / run_id / "meta.json"

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        """The meta at ``path``; None when it is gone, or unreadable (warned, naming it)."""
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            warn(f"skipped run {path.parent.name}: unreadable {path} ({type(exc).__name__}: {exc})")
            return None
        if not isinstance(meta, dict) or not {"run_id", "status", "spec"} <= set(meta):
            warn(f"skipped run {path.parent.name}: {path} lacks run_id, status or spec")
            return None
        return meta

    def stamp(self, run_id: str) -> tuple[str, str] | None:
        """(status, end time) of the run's stored meta, or None when none is stored: tells a
        result stored by another driver (or another attempt) apart from the one seen before."""
        meta = self.read_meta(self.meta_path(run_id))
        if meta is not None:
            return meta["status"], str(meta.get("end_time"))
        index = self.dataset.index()
        if run_id in index.index:
            row = index.loc[run_id]
            return str(row["status"]), str(row["end_time"])
        return None

    def status(self, run_id: str) -> str | None:
        """"ok", "failed", or None when the run has not finished (or its meta is unreadable)."""
        stamp = self.stamp(run_id)
        return None if stamp is None else stamp[0]

    def write(self, run_id: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        """Store a finished (or failed) run: metrics first, then its meta with the run's measures."""
        folder = self.runs_dir / run_id
        frame = pd.DataFrame(rows, columns=COLUMNS)
        atomic_write(folder / "metrics.parquet", lambda p: frame.to_parquet(p, index=False))
        measures = run_measures.record(frame)
        text = json.dumps({**meta, **({"measures": measures} if measures else {})}, indent=2, sort_keys=True,
                          default=str)
        atomic_write(folder / "meta.json", lambda p: p.write_text(text))

    def write_study(self, name: str, raw: dict[str, Any]) -> None:
        text = json.dumps({"name": name, "study": raw}, indent=2, sort_keys=True)
        atomic_write(self.root / f"study-{name}.json", lambda p: p.write_text(text))

    def studies(self) -> list[dict[str, Any]]:
        """Every study written here by ``write_study``: {"name", "study" (the table after --set)}."""
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("study-*.json"))]

    def iter_metas(self) -> Iterator[dict[str, Any]]:
        """The meta of every finished run (ok or failed), one at a time: run folders (in run id
        order), then the compacted runs that have no folder."""
        paths = sorted(self.runs_dir.glob("*/meta.json")) if self.runs_dir.is_dir() else []
        seen = set()
        for path in paths:
            meta = self.read_meta(path)
            if meta is None and path.exists():  # unreadable (warned): skipped, not replaced by an older copy
                seen.add(path.parent.name)
            if meta is not None:
                seen.add(meta["run_id"])
                yield meta
        yield from self.dataset.metas(exclude=seen)

    def metas(self) -> list[dict[str, Any]]:
        """The meta of every finished run (ok or failed)."""
        return list(self.iter_metas())

    def run_metrics(self, run_id: str, metrics: tuple[str, ...] | None = None) -> pd.DataFrame | None:
        """One run's tidy rows from its folder (optionally only ``metrics``); None when the folder
        has none (compacted), or unreadable (warned, naming the file)."""
        path = self.runs_dir / run_id / "metrics.parquet"
        try:
            return pd.read_parquet(path, filters=[("metric", "in", list(metrics))] if metrics else None)
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as exc:
            warn(f"skipped run {run_id}: unreadable {path} ({type(exc).__name__}: {exc})")
            return None

    def metrics(self, run_ids: list[str] | None = None, metrics: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Tidy rows of the completed runs (or of ``run_ids``), concatenated in run id order;
        ``metrics``: only the metrics named. A run whose rows cannot be read is warned about and left out."""
        ids = sorted(run_ids if run_ids is not None else
                     [m["run_id"] for m in self.iter_metas() if m["status"] == "ok"])
        frames, compacted = [], []
        for run_id in ids:
            frame = self.run_metrics(run_id, metrics)
            if frame is not None:
                frames.append(frame)
            elif not (self.runs_dir / run_id / "metrics.parquet").exists():
                compacted.append(run_id)
        if compacted:
            frames.append(self.dataset.metrics(compacted, metrics))
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=COLUMNS)
        data = pd.concat(frames, ignore_index=True)
        return data.sort_values("run_id", kind="stable", ignore_index=True) if compacted else data
