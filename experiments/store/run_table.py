"""The run table: every run of a results folder, read once per command; every view reads it.

``RunTable.read(store)`` reads each run's meta once (run folders and the compacted dataset alike,
through ``RunStore``'s readers, so their validation applies) and holds

- ``runs``: one row per completed run, in run id order: what it was (``describe.run_row``), its
  ``phase`` (``run``: a plain study's run; ``trial``: a tuning trial; ``final``: a tuned study's
  final run of its chosen configuration; ``default``: its hand-picked arm), and its final measures
  (``records``);
- ``failed``: one row per failed run (labels, phase, error);
- ``details``: run id -> the rest of its meta a user may ask for (summary, unmeasured, error);
- ``curves()``: per run and evaluation, validation and test accuracy and the cost spent by then
  (``curves.scan_curves``: one DuckDB scan of every run of the folder, cached and shared by
  every selection of the table);
- ``tidy(metrics, run_ids)``: the stored metric rows of those runs, with their run's info.

``verdict()`` is what the summary, score, rank and figure views read: the runs that are not tuning
trials (in a tuned study, exactly its final runs); ``trial_runs()`` what the tuning views read.
``public()`` is the table under the names a user sees everywhere (``describe.public``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bpbench.experiments.store import records
from bpbench.experiments.store.curves import CURVE_COLUMNS, scan_curves
from bpbench.experiments.store.dataset import warn
from bpbench.experiments.store.describe import failed_row, public, run_row, separate_configs, setting, wall_per_cpu
from bpbench.experiments.store.run_store import RunStore

PHASES = ("run", "trial", "final", "default")  # default: a tuned study's hand-picked arm
VERDICT_PHASES = ("run", "final")  # what a verdict is computed on: never a tuning trial
FILL_CHUNK = 1000  # compacted runs whose measures one read of the dataset computes


def phase(spec: Mapping[str, Any]) -> str:
    """A run's phase from its spec's tuning tag: ``run``, ``trial`` or ``final``."""
    tag = spec.get("tuning") or {}
    return {"tuning": "trial", "final": "final", "default": "default"}.get(str(tag.get("phase")), "run")


def searched(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the options a run's study varies (a tuned study: the searched ones), by name."""
    sections = {"model": spec["model"], "params": spec["params"], "task": spec["task_params"]}
    out = {}
    for key in spec.get("varied", []):
        section, name = key.split(".", 1)
        out[name] = sections[section][name]
    return out


@dataclass
class _Cache:
    """What a table and its selections share: the folder's run ids and their curves once scanned."""

    run_ids: list[str]
    curves: pd.DataFrame | None = None


@dataclass(frozen=True)
class RunTable:
    """The runs of one results folder (see the module docstring)."""

    store: RunStore
    runs: pd.DataFrame
    failed: pd.DataFrame
    details: Mapping[str, dict[str, Any]]
    cache: _Cache = field(repr=False, compare=False)

    @classmethod
    def read(cls, store: RunStore) -> RunTable:
        """The run table of ``store``: each run's meta read once (a run whose files cannot be read is
        named in a ``ResultsWarning`` and left out)."""
        rows, failed, details = _read_metas(store)
        unreadable = _fill_measures(store, [row for row in rows if row.pop("_missing", False)])
        rows = [row for row in rows if row["run_id"] not in unreadable]
        columns = [*(c for c in rows[0] if c not in records.names()), *records.names()] if rows else []
        runs = pd.DataFrame(rows, columns=columns)
        runs = runs.sort_values("run_id", kind="stable", ignore_index=True) if rows else runs
        return cls(store, runs, pd.DataFrame(failed), details, _Cache(list(runs.get("run_id", []))))

    def select(self, phases: Iterable[str]) -> RunTable:
        """The runs (and failed runs) of ``phases`` only, sharing this table's curve cache."""
        keep = set(phases)

        def of(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["phase"].isin(keep)].reset_index(drop=True) if not frame.empty else frame

        return RunTable(self.store, of(self.runs), of(self.failed), self.details, self.cache)

    def verdict(self) -> RunTable:
        """The runs every verdict view reads: no tuning trial (a tuned study: its final runs only)."""
        return self.select(VERDICT_PHASES)

    def trial_runs(self) -> RunTable:
        """A tuned study's tuning trials only (what ``--tuning``, EVP and sensitivity read)."""
        return self.select(("trial",))

    @property
    def tuned(self) -> bool:
        """Whether the folder holds a tuned study's runs (trials or final runs)."""
        phases = set(self.runs.get("phase", [])) | set(self.failed.get("phase", []))
        return bool(phases - {"run"})

    @property
    def run_ids(self) -> list[str]:
        return list(self.runs["run_id"]) if not self.runs.empty else []

    def info(self) -> pd.DataFrame:
        """``runs`` without the measures: what each run was."""
        return self.runs[[c for c in self.runs.columns if c not in records.names()]]

    def curves(self) -> pd.DataFrame:
        """Per run of this table and evaluation: ``curves.CURVE_COLUMNS`` and task, by run and epoch."""
        if self.cache.curves is None:
            self.cache.curves = scan_curves(self.store, self.cache.run_ids) if self.cache.run_ids else None
        if self.cache.curves is None or self.runs.empty:
            return pd.DataFrame(columns=[*CURVE_COLUMNS, "task"])
        tasks = self.runs.set_index("run_id")["task"]
        mine = self.cache.curves[self.cache.curves["run_id"].isin(tasks.index)].reset_index(drop=True)
        return mine.assign(task=mine["run_id"].map(tasks))

    def tidy(self, metrics: tuple[str, ...] | None = None, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The tidy results table: every metric row (or only ``metrics``) of this table's runs (or of
        ``run_ids`` among them), with its run's info (``runs`` without the measures)."""
        info = self.info()
        if run_ids is not None:
            info = info[info["run_id"].isin(set(run_ids))]
        if info.empty:
            return pd.DataFrame()
        rows = self.store.metrics(list(info["run_id"]), metrics)
        # A run's text columns repeat over its many rows: as Python objects, every row points at one
        # shared string (8 bytes) instead of holding a copy of the text, as pandas' default string
        # columns do (the figure rows of benchmarks/results_scale.py's 2,000 runs: 1.4 GB -> 0.33 GB).
        info = info.astype({c: object for c in info.columns if pd.api.types.is_string_dtype(info[c])})
        for column in ("run_id", "split", "metric", "layer"):  # via categories: one string per distinct value
            rows[column] = rows[column].astype("category").astype(object)
        return rows.merge(info.reset_index(drop=True), on="run_id", how="left")

    def public(self) -> pd.DataFrame:
        """One row per finished run (failed ones included, with their error), under the public names."""
        failed = self.failed.assign(status="failed") if not self.failed.empty else self.failed
        frame = pd.concat([self.runs.assign(status="ok"), failed], ignore_index=True)
        if frame.empty:
            return frame
        frame["error"] = frame["run_id"].map(lambda r: self.details[r].get("error"))
        return public(frame)


def _read_metas(store: RunStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(completed rows, failed rows, details) of every finished run; a completed row whose meta holds no
    measures (a folder written before they were stored) is marked ``_missing``."""
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    details: dict[str, dict[str, Any]] = {}
    settings: dict[str, list[dict[str, str]]] = {"ok": [], "failed": []}
    for meta in store.iter_metas():
        spec, run_id = meta["spec"], meta["run_id"]
        settings[meta["status"]].append(setting(spec))
        details[run_id] = {
            "summary": records.summary(meta),
            "unmeasured": meta.get("unmeasured", {}),
            "error": meta.get("error"),
            "tuning": dict(spec.get("tuning") or {}),
            "wall_seconds": meta.get("wall_seconds"),
            "trial": (spec.get("tuning") or {}).get("trial"),
            "sampler": (spec.get("tuning") or {}).get("sampler"),
            "options": searched(spec),
        }
        if meta["status"] != "ok":
            extra = {"run_id": run_id, "task_name": spec["task"], "seed": spec["seed_index"], "phase": phase(spec)}
            failed.append({**failed_row(meta), **extra})
            continue
        row = {**run_row(meta), "wall_per_cpu": wall_per_cpu(meta), "phase": phase(spec)}
        values = records.from_record(meta)
        row.update(values if values is not None else {"_missing": True})
        rows.append(row)
    separate_configs([*rows, *failed], [*settings["ok"], *settings["failed"]])
    return rows, failed, details


def _fill_measures(store: RunStore, rows: list[dict[str, Any]]) -> set[str]:
    """Compute the measures of ``rows`` (metas without a stored record) from their metric rows; returns
    the run ids whose rows could not be read (each named in a warning)."""
    compacted = []
    for row in rows:
        data = store.run_metrics(row["run_id"])
        if data is None and not (store.runs_dir / row["run_id"] / "metrics.parquet").exists():
            compacted.append(row)
        elif data is not None and not data.empty:
            row.update(records.measures(data).iloc[0].to_dict())
    for start in range(0, len(compacted), FILL_CHUNK):
        chunk = {row["run_id"]: row for row in compacted[start : start + FILL_CHUNK]}
        data = store.dataset.metrics(list(chunk))
        if not data.empty:
            for run_id, values in records.measures(data).to_dict("index").items():
                chunk[run_id].update(values)
    first = records.names()[0]
    unreadable = {row["run_id"] for row in rows if first not in row}
    for run_id in sorted(unreadable):
        warn(f"skipped run {run_id}: its meta.json holds no measures and its metric rows could not be read")
    return unreadable
