"""Wall time of the full `fashion` study, extrapolated from one epoch of a slice of it.

Runs every (learner, arch) configuration of the built-in `fashion` study once (seed 0), in
this process, on one torch thread, for one epoch of ``--fraction`` of the training split
(validation and test splits whole, so evaluation is timed at full size). Per configuration
it prints the training step time and the seconds one evaluation of all 70,000 images takes,
then extrapolates the full study: per run ``epochs x steps x step time`` (training) plus
the evaluations of train + val + test (before training, every ``eval_every`` epochs and
after the last), times the seeds, and divided by ``--cores`` workers (the default
``bpbench run`` puts one one-thread worker on each core). A run's time that is not training
counts as evaluation, so its one-off costs (building the learner, the runner's off-the-clock
FLOP and memory instruments) are spread over the evaluations: an upper bound. Left out:
task loading (once per worker) and gradient-health samples (one true-gradient pass every
``health_every`` steps, about 2% of the steps at 50). Every figure is given twice: wall-clock, and process CPU
time, which leaves out time spent waiting for a core (a run's CPU time is split between
training and evaluation in the proportion of their wall times); on a shared machine the
wall figures are upper bounds and the CPU figures estimate a quiet machine.

    python -m benchmarks.fashion_budget [--fraction 0.05] [--cores 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from bpbench.experiments.plan.config import build
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import Budget, Schedule
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.run.runner import LoadedTasks, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.05, help="share of the training split to time")
    parser.add_argument("--cores", type=int, default=2, help="one-thread workers the full study would use")
    args = parser.parse_args()
    torch.set_num_threads(1)
    learners, tasks = learner_registry(), task_registry()
    full = load_study("fashion", [], learners, tasks)
    sliced = load_study(
        "fashion",
        ["seeds=1", "budget.epochs=1", f"tasks.fashion_mnist.train_fraction={args.fraction}"],
        learners,
        tasks,
    )
    seeds = len({r.seed_index for r in full.runs})
    epochs = build(Budget, full.runs[0].budget, "budget").epochs
    every = build(Schedule, full.runs[0].schedule, "schedule").eval_every
    evaluations = 1 + len({*range(every, epochs + 1, every), epochs})
    cache = LoadedTasks()
    t0 = time.perf_counter()
    data = cache.get(sliced.runs[0], tasks)
    print(
        f"task load {time.perf_counter() - t0:.1f} s; slice: {len(data.train)} train, {len(data.val)} val, "
        f"{len(data.test)} test; full study: {len(full.runs)} runs, {seeds} seeds x {epochs} epochs, "
        f"{evaluations} evaluations a run"
    )
    full_train = round(len(data.train) / args.fraction)
    full_eval_images = full_train + len(data.val) + len(data.test)
    slice_images = 2 * (len(data.train) + len(data.val) + len(data.test))  # evaluated at epochs 0 and 1
    total = {"wall": 0.0, "cpu": 0.0}
    print(f"{'learner':<14} {'arch':<6} {'ms/step wall/cpu':>17} {'eval 70k s wall/cpu':>20} {'run s wall/cpu':>15}")
    for spec in sliced.runs:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = run(spec, learners, tasks, torch.device("cpu"), cache)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        s = result.summary
        steps_full = epochs * -(-full_train // spec.params["batch_size"])
        cells = []
        for kind, spent in (("wall", wall), ("cpu", cpu)):
            train = s["train_seconds"] if kind == "wall" else s["train_seconds"] * cpu / wall  # CPU share of train
            step_s, eval_s = train / s["steps"], (spent - train) / slice_images * full_eval_images
            run_s = steps_full * step_s + evaluations * eval_s
            total[kind] += seeds * run_s
            cells.append((step_s, eval_s, run_s))
        (ws, we, wr), (cs, ce, cr) = cells
        print(
            f"{spec.label:<14} {spec.model['arch']:<6} {1000 * ws:8.1f}/{1000 * cs:<8.1f} "
            f"{we:10.2f}/{ce:<9.2f} {wr:7.0f}/{cr:<7.0f}"
        )
    for kind in ("wall", "cpu"):
        print(
            f"full study ({kind} time): {total[kind] / 60:.0f} core-minutes, about "
            f"{total[kind] / 60 / args.cores:.0f} minutes on {args.cores} one-thread workers (no imbalance counted)"
        )


if __name__ == "__main__":
    main()
