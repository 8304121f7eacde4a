"""One run with its bookkeeping: metadata, error isolation, and the atomic write to the store.

Besides the runner's measurements, each run's meta records how the machine treated it:
``wall_seconds`` and ``cpu_seconds`` (this process's CPU time, all its threads) of the whole
run, and ``load`` (the 1-minute load average, ``os.getloadavg``) at its start and end. A run
whose wall time is many times its CPU time waited for the CPU (other work on the machine):
its timings measure contention, and the table marks it. A failed run keeps its traceback.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bpbench.experiments.plan.registry import Registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.provenance import git_commit, hardware, package_versions, providers
from bpbench.experiments.run.runner import LoadedTasks, run
from bpbench.experiments.schedule.pruning import report_hook
from bpbench.experiments.store.run_store import RunStore

Event = tuple[Any, ...]  # ("epoch", run_id, epoch, epochs) | ("done", run_id, outcome) | ("elsewhere", run_id, status)


@dataclass(frozen=True)
class Outcome:
    """What the study loop learns about a finished run."""

    run_id: str
    status: str  # "ok" | "failed"
    summary: dict[str, Any]
    error: str | None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def base_meta(spec: RunSpec, device: torch.device) -> dict[str, Any]:
    return {
        "run_id": spec.run_id,
        "seed": spec.seed,
        "spec": spec.to_json(),
        "git": git_commit(),
        "versions": package_versions(),
        "providers": providers(spec),
        "hardware": hardware(device),
        "start_time": now(),
    }


def execute(
    spec: RunSpec,
    store: RunStore,
    learners: Registry,
    tasks: Registry,
    device: torch.device,
    cache: LoadedTasks,
    emit: Callable[[Event], None],
) -> Outcome:
    """Run ``spec`` and store its rows and meta; an exception fails this run only."""
    rows, meta, outcome = execute_unstored(spec, learners, tasks, device, cache, emit, store.root)
    store.write(spec.run_id, rows, meta)
    return outcome


def execute_unstored(
    spec: RunSpec,
    learners: Registry,
    tasks: Registry,
    device: torch.device,
    cache: LoadedTasks,
    emit: Callable[[Event], None],
    root: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any], Outcome]:
    """Run ``spec``; its (rows, meta, outcome) for whoever stores them (an exception fails this run only).
    ``root``: the results folder, where a pruned tuning study's probe run reports (schedule/pruning.py)."""
    meta = base_meta(spec, device)
    rows: list[dict[str, Any]] = []
    load_start, wall0, cpu0 = load_average(), time.perf_counter(), time.process_time()
    try:
        result = run(
            spec,
            learners,
            tasks,
            device,
            cache,
            on_epoch=lambda e, n: emit(("epoch", spec.run_id, e, n)),
            on_evaluated=report_hook(spec, root),
        )
    except Exception as exc:  # isolation boundary: any failure of this run is recorded, the study goes on
        outcome = Outcome(spec.run_id, "failed", {}, f"{type(exc).__name__}: {exc}")
        meta.update(status="failed", error=outcome.error, traceback=traceback.format_exc())
    else:
        rows = result.rows
        outcome = Outcome(spec.run_id, "ok", result.summary, None)
        meta.update(
            status="ok",
            error=None,
            summary=result.summary,
            unmeasured=result.unmeasured,
            phase_seconds=result.phase_seconds,
        )
    meta.update(
        wall_seconds=time.perf_counter() - wall0,
        cpu_seconds=time.process_time() - cpu0,
        load={"start": load_start, "end": load_average()},
        end_time=now(),
    )
    return rows, meta, outcome


def load_average() -> float | None:
    """The machine's 1-minute load average; None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def record_lost(spec: RunSpec, store: RunStore, device: torch.device, reason: str) -> Outcome:
    """Store a failed meta for a run whose worker died before it could write one."""
    meta = base_meta(spec, device)
    meta.update(status="failed", error=reason, end_time=now())
    store.write(spec.run_id, [], meta)
    return Outcome(spec.run_id, "failed", {}, reason)
