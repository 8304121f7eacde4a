"""What an executor costs: the inline, process and Ray executors on the same runs, 2 workers.

1. Per-run overhead: ``--runs`` (200) runs of backprop on digits with a 1-step budget
   (``budget.samples = 1``; a small MLP), so nearly all of a run's time is the executor's.
   Overhead per run = (workers x wall - sum of the runs' own durations) / runs, in ms: the
   worker time a run costs beyond its own ``start_time .. end_time`` (process start-up, data
   loading, transport, storing), with start-up amortised over the runs; the time to the first
   result shows the start-up alone. The inline executor has one worker (this process).
2. ``quick`` wall time (``--quick-seeds``, 3 = the real study; 0 skips it), and Ray's wall over
   the process executor's. The target: Ray <= 1.1 x process on a 2-core machine.

Executors are measured in turn, ``--rounds`` times (interleaved, so load from other processes
hits them alike; the median is printed), each in this one process, into a fresh folder; a
local Ray instance is started (and stopped) by each Ray measurement, as ``bpbench run
--executor ray`` does. Timings depend on the machine: run it on a quiet one.

    python -m benchmarks.executor_overhead [--runs 200] [--quick-seeds 3] [--rounds 1] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

# One machine: a local Ray binds 127.0.0.1 only (Ray's single-machine mode), and reports nothing.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.schedule.process_pool import make_executor
from bpbench.experiments.store.run_store import RunStore

EXECUTORS = ("inline", "process", "ray")
ONE_STEP = ["learners={backprop = {}}", 'tasks=["digits"]', "model.hidden=[16]", "budget.epochs=1", "budget.samples=1"]


def measure(executor_name: str, study: str, sets: list[str], jobs: int) -> tuple[float, float, float, int]:
    """(wall seconds of the executor over the study, seconds to its first result, sum of the
    runs' own seconds, runs), in a fresh folder."""
    runs = load_study(study, sets, learner_registry(), task_registry()).runs
    executor = make_executor(executor_name, jobs=jobs, threads=1, device="cpu")
    with tempfile.TemporaryDirectory(prefix="bpbench-overhead-") as folder:
        store = RunStore(Path(folder))
        start = time.perf_counter()
        outcomes, first = [], 0.0
        for outcome in executor.run(runs, store, lambda event: None):
            first = first or time.perf_counter() - start
            outcomes.append(outcome)
        wall = time.perf_counter() - start
        failed = [o for o in outcomes if o.status != "ok"]
        if failed or len(outcomes) != len(runs):
            raise RuntimeError(f"{executor_name}: {len(outcomes)} of {len(runs)} runs, failed: {failed[:1]}")
        own = sum(
            (datetime.fromisoformat(m["end_time"]) - datetime.fromisoformat(m["start_time"])).total_seconds()
            for m in store.metas()
        )
    return wall, first, own, len(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="1-step runs for the overhead (default 200)")
    ap.add_argument("--quick-seeds", type=int, default=3, help="seeds of quick for the wall time (3 = quick; 0: skip)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repetitions; medians are printed")
    ap.add_argument("--jobs", type=int, default=2, help="workers of the process and Ray executors (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    overhead: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    startup: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    quick: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    for _ in range(args.rounds):
        for name in EXECUTORS:
            workers = 1 if name == "inline" else args.jobs
            wall, first, own, n = measure(name, "quick", [*ONE_STEP, f"seeds={args.runs}"], args.jobs)
            overhead[name].append((workers * wall - own) / n * 1000)
            startup[name].append(first)
            print(
                f"  {name}: {n} one-step runs in {wall:.1f} s wall (first after {first:.1f} s), "
                f"{own:.1f} s inside runs",
                flush=True,
            )
            if args.quick_seeds:
                wall, _, _, n = measure(name, "quick", [f"seeds={args.quick_seeds}"], args.jobs)
                quick[name].append(wall)
                print(f"  {name}: quick ({n} runs) in {wall:.1f} s wall", flush=True)
    print(
        f"\nexecutor overhead on {os.cpu_count()} cores, {args.jobs} workers (inline: 1), "
        f"median of {args.rounds} round(s)"
    )
    print(f"{'executor':<10}{'overhead ms/run':>17}{'first result s':>16}{'quick wall s':>14}")
    for name in EXECUTORS:
        wall = f"{statistics.median(quick[name]):.1f}" if quick[name] else "skipped"
        print(
            f"{name:<10}{statistics.median(overhead[name]):>17.1f}{statistics.median(startup[name]):>16.1f}{wall:>14}"
        )
    if quick["ray"]:
        ratio = statistics.median(quick["ray"]) / statistics.median(quick["process"])
        print(f"\nquick wall, ray / process: {ratio:.2f} (target <= 1.10)")


if __name__ == "__main__":
    main()
