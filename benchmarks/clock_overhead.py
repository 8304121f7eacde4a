"""Does the runner's training clock time training only?

Runs one learner for one epoch through the runner (``train_seconds``) and, interleaved,
times a bare loop of the same ``train_step`` calls on the same minibatches with no
instrument anywhere (the training cost alone). The runner's figure should match the bare
one: the FLOP counter and the memory probe run on a twin learner off the clock. Prints
each pair and the median ratio runner / bare (one thread; wall time, so a busy machine
adds noise to both sides alike).

    python -m benchmarks.clock_overhead [--learner snn_bptt] [--task digits] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.runner import LoadedTasks, build_learner, run

MODELS = {"snn_bptt": {"hidden": [256]}, "snn_dfa": {"hidden": [256]}}
PARAMS = {"snn_bptt": {"num_steps": 10, "lr": 0.002}, "snn_dfa": {"num_steps": 10, "lr": 0.002}}


def spec_for(learner: str, task: str) -> RunSpec:
    params = {**learner_registry().get(learner).Params().__dict__, **PARAMS.get(learner, {})}
    return RunSpec(
        learner=learner,
        label=learner,
        params=params,
        task=task,
        task_label=task,
        task_params={},
        model=MODELS.get(learner, {"hidden": [256, 256]}),
        budget={"epochs": 1},
        schedule={"eval_every": 1, "health_every": 10**9},
        seed_index=0,
        study_seed=0,
    )


def bare_epoch(spec: RunSpec, cache: LoadedTasks) -> float:
    """Seconds of one epoch of plain ``train_step`` calls in the runner's minibatch order."""
    data = cache.get(spec, task_registry())
    device = torch.device("cpu")
    learner = build_learner(spec, data, learner_registry(), device)
    order = torch.Generator().manual_seed(spec.seed + 1)
    perm = torch.randperm(len(data.train), generator=order)
    total = 0.0
    for start in range(0, len(perm), learner.batch_size):
        idx = perm[start : start + learner.batch_size]
        x, y = data.train.x[idx], data.train.y[idx]
        t0 = time.perf_counter()
        learner.train_step(x, y)
        total += time.perf_counter() - t0
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--learner", default="snn_bptt")
    p.add_argument("--task", default="digits")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    spec, cache = spec_for(args.learner, args.task), LoadedTasks()
    ratios = []
    for i in range(args.repeats):
        runner = run(spec, learner_registry(), task_registry(), torch.device("cpu"), cache).summary["train_seconds"]
        bare = bare_epoch(spec, cache)
        ratios.append(runner / bare)
        print(f"repeat {i}: runner train_seconds {runner:.3f} s, bare loop {bare:.3f} s, ratio {runner / bare:.3f}")
    print(f"{args.learner} on {args.task}, 1 epoch: median ratio runner / bare = {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
