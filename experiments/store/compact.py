"""``bpbench compact DIR``: move finished runs from their folders into the partitioned dataset.

For big sweeps: tens of thousands of ``runs/<id>/`` folders become a few parquet files per
(study, task, learner) under ``DIR/dataset/`` (layout in ``experiments.store.dataset``), which
``table``, ``plot``, ``report``, ``bpbench.load`` and pandas or DuckDB read directly.

Safe while a study is still writing to ``DIR``, and it never loses or duplicates a run:

- only runs whose ``meta.json`` exists (stored in full: metrics are written before meta) are
  taken, each under its run claim (``experiments.store.claims``): a run a driver is running again
  (a failed run re-run on resume) is left for the next compaction, and no driver can store
  it while it is being moved;
- a batch's part files are written under ``dataset/.staging-*`` and renamed into place one by
  one, the dataset's stamp is renewed, and only then are the batch's run folders deleted, so
  every run is always readable from one form or the other (readers take a folder over the
  dataset, and list folders before they read the dataset);
- a run already in the dataset with the same status and end time (a compaction that stopped
  before deleting its folders) is not added again; an older copy (a failed run since re-run)
  is superseded: its part files are rewritten without it once the new copy is in place.

Compactions of one folder take turns (a lock file, ``dataset/.compact.lock``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from bpbench.experiments.store import records
from bpbench.experiments.store.claims import Claims
from bpbench.experiments.store.dataset import METRIC_COLUMNS, PARTITIONS, Dataset, warn
from bpbench.experiments.store.describe import public_names, run_row, varied_label
from bpbench.experiments.store.run_store import RunStore, atomic_write
from bpbench.experiments.store.run_table import phase
from bpbench.experiments.store.safe_paths import UnsafePathError, check_writable, file_mode

BATCH_RUNS = 2000  # runs read into memory and written per compaction step
UNKNOWN_STUDY = "unknown"


@dataclass
class Compaction:
    """What a compaction did: runs moved into the dataset, folders dropped as already there,
    and run id -> why it stayed in its folder."""

    moved: int = 0
    already: int = 0
    left: dict[str, str] = field(default_factory=dict)


def study_of(spec: dict[str, Any], studies: list[dict[str, Any]]) -> str:
    """The study partition of a run: the study its spec names; for runs stored before specs
    named it, the only study written to the folder, or the first (by name) whose learner
    tables hold the run's label; else ``unknown``."""
    if spec.get("study"):
        return spec["study"]
    if len(studies) == 1:
        return studies[0]["name"]
    matches = [s["name"] for s in studies if spec["label"] in s["study"].get("learners", {})]
    return min(matches) if matches else UNKNOWN_STUDY


def _batch_name() -> str:
    """Sorts by time, so of two copies with equal end times the later compaction's counts."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


PARTITION_MAX = 120  # bytes of an encoded partition value (a folder name may hold 255)


def partition_value(value: str) -> str:
    """``value`` percent-encoded (hive partitioning's "uri" encoding); a value whose encoding is
    longer than ``PARTITION_MAX`` (40 CJK characters take 360 bytes) is cut and tagged with a
    hash of the whole, so every label fits a folder name and two labels never share one (the
    run's full label stays in its meta)."""
    encoded = quote(value, safe="")
    if len(encoded) <= PARTITION_MAX:
        return encoded
    tag = hashlib.sha256(value.encode()).hexdigest()[:12]
    cut = value
    while len(quote(cut, safe="")) > PARTITION_MAX - 13:
        cut = cut[:-1]
    return f"{quote(cut, safe='')}~{tag}"


def _hive(values: tuple[str, ...]) -> Path:
    """``study=S/task_label=T/label=L``, each value as ``partition_value`` writes it."""
    return Path(*[f"{key}={partition_value(value)}" for key, value in zip(PARTITIONS, values)])


def _run_row(meta: dict[str, Any], batch: str) -> dict[str, Any]:
    """The dataset's row of one run: index columns, its info and measures as columns (public names:
    ``describe.public_names``), the meta. Its label and task label are in the partition path."""
    names = public_names()
    in_path = {k for k, v in names.items() if v in PARTITIONS} | {"run_id"}  # the partitions hold those
    info = {names.get(k, k): v for k, v in run_row(meta).items() if k not in in_path}
    values = records.from_record(meta) or dict.fromkeys(records.names())
    return {
        "run_id": meta["run_id"],
        "status": meta["status"],
        "end_time": str(meta.get("end_time")),
        "batch": batch,
        "error": meta.get("error"),
        "phase": phase(meta["spec"]),
        **info,
        **{names.get(k, k): v for k, v in values.items()},
        "meta": json.dumps(meta, sort_keys=True, default=str),
    }


def _write_parts(dataset: Dataset, batch: str, runs: list[tuple[tuple[str, ...], dict[str, Any], pd.DataFrame]]) -> int:
    """Write one runs part and one metrics part per partition of ``runs``, staged then renamed."""
    staging = dataset.dir / f".staging-{batch}"
    groups: dict[tuple[str, ...], list[tuple[dict[str, Any], pd.DataFrame]]] = {}
    for key, meta, rows in runs:
        groups.setdefault(key, []).append((meta, rows))
    staged = []
    try:
        for n, (key, members) in enumerate(sorted(groups.items())):
            table = pd.DataFrame([_run_row(meta, batch) for meta, _ in members])
            rows = pd.concat(
                [r.assign(configuration=varied_label(meta["spec"])) for meta, r in members if not r.empty]
                or [pd.DataFrame(columns=[*METRIC_COLUMNS, "configuration"])],
                ignore_index=True,
            )[[*METRIC_COLUMNS, "configuration"]].assign(batch=batch)
            for half, frame in (("metrics", rows), ("runs", table)):
                tmp = staging / f"{half}-{n}.parquet"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                frame.to_parquet(tmp, index=False)
                os.chmod(tmp, file_mode())
                final = dataset.dir / half / _hive(key) / f"{batch}.parquet"
                check_writable(dataset.dir, final)
                staged.append((tmp, final))
        for tmp, final in staged:  # metrics before runs (per partition), so a counted run has its rows
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
    finally:  # a failed batch leaves no staging folder behind (its runs stay in their folders)
        shutil.rmtree(staging, ignore_errors=True)
    return len(groups)


def _renew_stamp(dataset: Dataset) -> None:
    atomic_write(dataset.dir / "STAMP", lambda p: p.write_text(uuid.uuid4().hex), dataset.dir.parent)


def drop_shadowed(dataset: Dataset) -> int:
    """Rewrite the part files that hold a copy of a run that does not count (an older or
    repeated copy); returns how many copies were dropped."""
    copies = dataset.copies()
    counting = dataset.index()
    counted = set(zip(counting.index, counting["batch"]))
    mask = pd.Series(
        [(r, b) not in counted for r, b in zip(copies["run_id"], copies["batch"])], dtype=bool, index=copies.index
    )
    shadowed = copies[mask]
    for part, group in shadowed.groupby("part"):
        runs_part = Path(part)
        metrics_part = dataset.dir / "metrics" / runs_part.relative_to(dataset.dir / "runs")
        drop = set(group["run_id"])
        for path in (metrics_part, runs_part):  # metrics first: a run in a runs part keeps its rows
            if not path.exists():
                continue
            try:
                table = pq.read_table(path, partitioning=None)
            except (OSError, pa.ArrowException) as exc:  # left as it is: readers skip it with a warning
                warn(f"not rewritten {path}: unreadable part file ({type(exc).__name__}: {str(exc)[:200]})")
                continue
            kept = table.filter(pa.compute.invert(pa.compute.is_in(table["run_id"], pa.array(sorted(drop)))))
            if kept.num_rows == 0:
                path.unlink()
            else:
                atomic_write(path, lambda p, kept=kept: pq.write_table(kept, p))
    if len(shadowed):
        _renew_stamp(dataset)
    return len(shadowed)


def compact(root: str | Path, batch_runs: int = BATCH_RUNS) -> Compaction:
    """Move every finished run of the results folder ``root`` into its dataset (see the module doc)."""
    store = RunStore(Path(root))
    dataset = store.dataset
    check_writable(store.root, dataset.dir / "STAMP")
    dataset.dir.mkdir(parents=True, exist_ok=True)
    result = Compaction()
    lock = dataset.dir / ".compact.lock"
    if lock.is_symlink():  # FileLock would open (and truncate) its target
        raise UnsafePathError(f"refusing to use {lock}: it is a symbolic link; remove it and run again")
    with FileLock(lock):
        drop_shadowed(dataset)  # what an interrupted compaction may have left
        studies = store.studies()
        ids = [p.parent.name for p in store.run_folders() if p.exists()]  # run ids only; symlinks skipped
        claims = Claims(store.root / "claims")
        try:
            for start in range(0, len(ids), batch_runs):
                _compact_batch(store, claims, studies, ids[start : start + batch_runs], result)
        finally:
            claims.close()
    return result


def _compact_batch(
    store: RunStore, claims: Claims, studies: list[dict[str, Any]], ids: list[str], result: Compaction
) -> None:
    dataset, batch = store.dataset, _batch_name()
    index = dataset.index()
    taken: list[tuple[tuple[str, ...], dict[str, Any], pd.DataFrame]] = []
    done: list[str] = []
    try:
        for run_id in ids:
            if not claims.acquire(run_id):
                result.left[run_id] = "a driver holds its claim (it is running it again)"
                continue
            meta = store.complete_meta(store.meta_path(run_id))  # validated: record, columns, rows
            rows = store.run_metrics(run_id) if meta is not None else None
            if meta is None or rows is None:
                result.left[run_id] = "its meta.json or metrics.parquet is missing or unreadable"
                claims.release(run_id)
                continue
            if run_id in index.index and tuple(index.loc[run_id, ["status", "end_time"]]) == (
                meta["status"],
                str(meta.get("end_time")),
            ):
                done.append(run_id)  # already in the dataset as it is here
                continue
            if records.from_record(meta) is None and (measures := records.record(rows)):
                meta = {**meta, "measures": measures}  # a run stored before meta.json held its measures
            key = (study_of(meta["spec"], studies), meta["spec"]["task_label"], meta["spec"]["label"])
            taken.append((key, meta, rows))
        if taken:
            _write_parts(dataset, batch, taken)
            _renew_stamp(dataset)
            drop_shadowed(dataset)
        for run_id in [*(meta["run_id"] for _, meta, _ in taken), *done]:
            shutil.rmtree(store.run_dir(run_id))  # a validated run id: never a path out of runs/
        result.moved += len(taken)
        result.already += len(done)
    finally:
        for run_id in ids:
            claims.release(run_id)
