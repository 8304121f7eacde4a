"""The results store: one folder per run, written atomically, so studies resume and merge.

Layout under a study's output folder::

    runs/<run_id>/metrics.parquet   tidy rows: run_id, epoch, step, split, metric, layer, value
    runs/<run_id>/meta.json         spec, seed, status, error, git commit, versions, hardware, times
    claims/<run_id>/<generation>    while a run is executing: which driver holds it (experiments/store/claims.py)

``metrics.parquet`` is written before ``meta.json``; a run counts as complete only when its
meta says ``"status": "ok"``. Both files are written to a temporary name and renamed.
``meta.json`` also holds the run's final measures (``experiments.store.records``), computed
from the rows written beside it and stored only there, so the table reads no metric rows.
Folders from several studies or machines can be merged by copying ``runs/`` together.

``bpbench compact`` moves finished runs into a partitioned parquet dataset
(``experiments.store.dataset``); every read here sees both forms, a run once: its folder when it
has one (the newer copy), else the dataset's. Folders are listed before the dataset is read,
so a run moved by a compaction meanwhile is found in the dataset. A run file that cannot be
read is named in a ``ResultsWarning`` and skipped.

The folder is a boundary (``experiments.store.safe_paths``): a run is read from a folder whose
name is its run id, whose meta passes ``validate.meta_problem`` (its run id is the hash of its
spec) and which is not a symbolic link; a run marked ok whose ``metrics.parquet`` is missing or
unreadable counts as incomplete (the table leaves it out, resume runs it again). Nothing is
written through a symlink: writes go to a temporary file in the target folder, renamed into
place, after checking that no folder on the way is a link. Files get the user's umask.
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
import pyarrow.parquet as pq

from bpbench.experiments.store import records
from bpbench.experiments.store.dataset import METRIC_COLUMNS as COLUMNS
from bpbench.experiments.store.dataset import Dataset, warn
from bpbench.experiments.store.record_schema import study_problem
from bpbench.experiments.store.safe_paths import check_writable, file_mode, safe_name, valid_run_id
from bpbench.experiments.store.validate import columns_problem, meta_problem, rows_problem


def atomic_write(path: Path, write: Callable[[Path], object], root: Path | None = None) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place (a
    symlink at ``path`` is replaced, its target untouched). ``root``: refuse (``UnsafePathError``)
    when a folder between ``root`` and ``path`` is a symlink. The file gets the user's umask."""
    if root is not None:
        check_writable(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:60]}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RunStore:
    """Reads and writes the runs under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.dataset = Dataset(self.root)

    def run_dir(self, run_id: str) -> Path:
        """``runs/<run_id>``; a ValueError for anything that is not a run id."""
        if not valid_run_id(run_id):
            raise ValueError(f"run id {str(run_id)[:60]!r}: not a run id (16 hex digits)")
        return self.runs_dir / run_id

    def meta_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "meta.json"

    def linked(self, run_id: str) -> bool:
        """Whether ``runs/<run_id>`` (or ``runs/``) is a symbolic link: never read or written."""
        return self.runs_dir.is_symlink() or self.run_dir(run_id).is_symlink()

    def read_meta(self, path: Path) -> dict[str, Any] | None:
        """The meta at ``path`` (``runs/<id>/meta.json``); None when it is gone, or unusable
        (warned, naming the file and the problem): unreadable, not what bpbench writes, under
        a symlinked folder, or in a folder not named by its run id."""
        folder = path.parent.name
        if not valid_run_id(folder) or self.linked(folder) or path.is_symlink():
            if path.parent.exists() or path.parent.is_symlink():
                warn(f"skipped {path.parent}: not a run folder (its name is not a run id, or it is a symbolic link)")
            return None
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            warn(f"skipped run {folder}: unreadable {path} ({type(exc).__name__}: {str(exc)[:200]})")
            return None
        problem = meta_problem(meta, folder)
        if problem is not None:
            warn(f"skipped run {folder}: {path}: {problem}")
            return None
        return meta

    def metrics_problem(self, meta: dict[str, Any]) -> str | None:
        """Why the run folder's ``metrics.parquet`` cannot count (None: its footer reads, its columns
        have bpbench's types and it holds no more rows than the run's budget allows)."""
        path = self.run_dir(meta["run_id"]) / "metrics.parquet"
        if path.is_symlink():
            return f"{path} is a symbolic link"
        try:
            footer = pq.read_metadata(path)
        except FileNotFoundError:
            return f"{path} is missing"
        except (OSError, pa.ArrowException) as exc:
            return f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:200]})"
        return columns_problem(path, footer.schema.to_arrow_schema()) or rows_problem(path, footer.num_rows, meta)

    def complete_meta(self, path: Path) -> dict[str, Any] | None:
        """``read_meta(path)``, and None (warned) for a run marked ok whose metric rows cannot be
        read: an incomplete run, which resume runs again."""
        meta = self.read_meta(path)
        if meta is not None and meta["status"] == "ok" and (problem := self.metrics_problem(meta)):
            warn(f"skipped run {meta['run_id']} (incomplete; a resumed study runs it again): {problem}")
            return None
        return meta

    def stamp(self, run_id: str) -> tuple[str, str] | None:
        """(status, end time) of the run's stored meta, or None when none is stored: tells a
        result stored by another driver (or another attempt) apart from the one seen before."""
        path = self.meta_path(run_id)
        meta = self.complete_meta(path)
        if meta is not None:
            return meta["status"], str(meta.get("end_time"))
        if path.exists() or path.parent.is_symlink():  # an unusable folder: not replaced by a compacted copy
            return None
        index = self.dataset.index()
        if run_id in index.index:
            row = index.loc[run_id]
            return str(row["status"]), str(row["end_time"])
        return None

    def status(self, run_id: str) -> str | None:
        """ "ok", "failed", or None when the run has not finished (or its meta is unreadable)."""
        stamp = self.stamp(run_id)
        return None if stamp is None else stamp[0]

    def write(self, run_id: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        """Store a finished (or failed) run: metrics first, then its meta with the run's measures."""
        folder = self.run_dir(run_id)
        frame = pd.DataFrame(rows, columns=COLUMNS)
        atomic_write(folder / "metrics.parquet", lambda p: frame.to_parquet(p, index=False), self.root)
        measures = records.record(frame)
        if measures:  # each measure stored once: in the record, not repeated in the summary
            meta = {**meta, "summary": records.summary({**meta, "measures": measures}), "measures": measures}
        text = json.dumps(meta, indent=2, sort_keys=True, default=str)
        atomic_write(folder / "meta.json", lambda p: p.write_text(text), self.root)

    def study_path(self, name: str) -> Path:
        return self.root / f"study-{safe_name(name)}.json"

    def write_study(self, name: str, raw: dict[str, Any], run_ids: list[str] | None = None) -> None:
        """Record study ``name``'s definition (and its run ids) as ``study-<name>.json``."""
        record = {"name": name, "study": raw, **({"runs": sorted(run_ids)} if run_ids is not None else {})}
        text = json.dumps(record, indent=2, sort_keys=True)
        atomic_write(self.study_path(name), lambda p: p.write_text(text), self.root)

    def studies(self) -> list[dict[str, Any]]:
        """Every study written here by ``write_study``: {"name", "study" (the table after --set)};
        a file that is not one is skipped with a warning naming it."""
        out = []
        for path in sorted(self.root.glob("study-*.json")):
            try:
                record = json.loads(path.read_text()) if not path.is_symlink() else None
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
                warn(f"skipped {path}: unreadable ({type(exc).__name__}: {str(exc)[:200]})")
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("name"), str)
                and isinstance(record.get("study"), dict)
                and (problem := study_problem(record))
            ):
                warn(f"skipped {path}: {problem}")
                continue
            if not (
                isinstance(record, dict)
                and isinstance(record.get("name"), str)
                and isinstance(record.get("study"), dict)
            ):
                warn(
                    f"skipped {path}: not a study record (a table with a name and a study table)"
                    + (", or a symbolic link" if path.is_symlink() else "")
                )
                continue
            out.append(record)
        return out

    def run_folders(self) -> list[Path]:
        """The ``runs/<id>/meta.json`` paths of the run folders, in run id order; entries that are
        not run folders (a name that is not a run id, a symlink) are warned about and left out."""
        if not self.runs_dir.is_dir() or self.runs_dir.is_symlink():
            if self.runs_dir.is_symlink():
                warn(f"skipped {self.runs_dir}: a symbolic link (run folders are read only inside the folder)")
            return []
        paths = []
        for entry in sorted(self.runs_dir.iterdir()):
            if not valid_run_id(entry.name) or entry.is_symlink() or not entry.is_dir():
                if not entry.name.startswith("."):
                    warn(f"skipped {entry}: not a run folder (its name is not a run id, or it is a symbolic link)")
                continue
            paths.append(entry / "meta.json")
        return paths

    def iter_metas(self) -> Iterator[dict[str, Any]]:
        """The meta of every finished run (ok or failed), one at a time: run folders (in run id
        order), then the compacted runs that have no folder."""
        seen = set()
        for path in self.run_folders():
            if not path.exists():
                continue
            meta = self.complete_meta(path)
            seen.add(path.parent.name)  # unusable (warned): skipped, not replaced by an older copy
            if meta is not None:
                yield meta
        yield from self.dataset.metas(exclude=seen)

    def metas(self) -> list[dict[str, Any]]:
        """The meta of every finished run (ok or failed)."""
        return list(self.iter_metas())

    def run_metrics(self, run_id: str, metrics: tuple[str, ...] | None = None) -> pd.DataFrame | None:
        """One run's tidy rows from its folder (optionally only ``metrics``); None when the folder
        has none (compacted), or unreadable (warned, naming the file)."""
        path = self.run_dir(run_id) / "metrics.parquet"
        if self.linked(run_id) or path.is_symlink():
            warn(f"skipped run {run_id}: {path} is under or is a symbolic link")
            return None
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
        ids = sorted(
            run_ids if run_ids is not None else [m["run_id"] for m in self.iter_metas() if m["status"] == "ok"]
        )
        frames, compacted = [], []
        for run_id in ids:
            frame = self.run_metrics(run_id, metrics)
            if frame is not None:
                frames.append(frame)
            elif not (self.run_dir(run_id) / "metrics.parquet").exists():
                compacted.append(run_id)
        if compacted:
            frames.append(self.dataset.metrics(compacted, metrics))
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame(columns=COLUMNS)
        data = pd.concat(frames, ignore_index=True)
        return data.sort_values("run_id", kind="stable", ignore_index=True) if compacted else data
