"""The results store: one folder per run, written atomically, so studies resume and merge.

Layout under a study's output folder::

    runs/<run_id>/metrics.parquet   tidy rows: run_id, epoch, step, split, metric, layer, value
    runs/<run_id>/meta.json         spec, seed, status, error, git commit, versions, hardware, times
    claims/<run_id>/<generation>    while a run is executing: which driver holds it (experiments/claims.py)

``metrics.parquet`` is written before ``meta.json``; a run counts as complete only when its
meta says ``"status": "ok"``. Both files are written to a temporary name and renamed.
Folders from several studies or machines can be merged by copying ``runs/`` together.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ["run_id", "epoch", "step", "split", "metric", "layer", "value"]


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

    def meta_path(self, run_id: str) -> Path:
        return self.runs_dir / run_id / "meta.json"

    def status(self, run_id: str) -> str | None:
        """"ok", "failed", or None when the run has not finished."""
        path = self.meta_path(run_id)
        if not path.is_file():
            return None
        return json.loads(path.read_text())["status"]

    def stamp(self, run_id: str) -> tuple[str, str] | None:
        """(status, end time) of the run's stored meta, or None when none is stored: tells a
        result stored by another driver (or another attempt) apart from the one seen before."""
        path = self.meta_path(run_id)
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return meta["status"], str(meta.get("end_time"))

    def write(self, run_id: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        """Store a finished (or failed) run: metrics first, then its meta."""
        folder = self.runs_dir / run_id
        frame = pd.DataFrame(rows, columns=COLUMNS)
        atomic_write(folder / "metrics.parquet", lambda p: frame.to_parquet(p, index=False))
        text = json.dumps(meta, indent=2, sort_keys=True, default=str)
        atomic_write(folder / "meta.json", lambda p: p.write_text(text))

    def write_study(self, name: str, raw: dict[str, Any]) -> None:
        text = json.dumps({"name": name, "study": raw}, indent=2, sort_keys=True)
        atomic_write(self.root / f"study-{name}.json", lambda p: p.write_text(text))

    def studies(self) -> list[dict[str, Any]]:
        """Every study written here by ``write_study``: {"name", "study" (the table after --set)}."""
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("study-*.json"))]

    def metas(self) -> list[dict[str, Any]]:
        """The meta of every finished run (ok or failed)."""
        if not self.runs_dir.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.runs_dir.glob("*/meta.json"))]

    def metrics(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Tidy rows of the completed runs (or of ``run_ids``), concatenated."""
        ids = run_ids if run_ids is not None else [m["run_id"] for m in self.metas() if m["status"] == "ok"]
        frames = [pd.read_parquet(self.runs_dir / rid / "metrics.parquet") for rid in ids]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
