"""Interleaved step timing for the speed benchmarks: every contender steps once per round, in a
shuffled order, so load from other processes hits all of them alike.

``interleaved_medians(steps, pool, rounds, device)`` -> (median wall seconds, median thread-CPU
seconds) per contender. ``steps``: name -> a function of one minibatch (x, y); ``pool``: distinct
minibatches, cycled (one batch repeated hundreds of times drives the loss to ~0 and optimizer
state into subnormal floats, whose slow arithmetic would time that degenerate regime).
The thread-CPU time leaves out time the thread waited for a core on a shared machine.
"""
from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

Step = Callable[[Tensor, Tensor], object]


def timed(step: Step, x: Tensor, y: Tensor, device: torch.device) -> tuple[float, float]:
    """(wall seconds, thread CPU seconds) of one step, synchronized on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.thread_time()
    step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.thread_time() - cpu


def interleaved_medians(steps: dict[str, Step], pool: list[tuple[Tensor, Tensor]], rounds: int,
                        device: torch.device, warmup: int = 10) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and thread-CPU seconds per step of each contender over ``rounds`` shuffled rounds."""
    for step in steps.values():
        for x, y in pool[:warmup]:
            step(x, y)
    order = random.Random(0)
    wall: dict[str, list[float]] = {n: [] for n in steps}
    cpu: dict[str, list[float]] = {n: [] for n in steps}
    for i in range(rounds):
        x, y = pool[i % len(pool)]
        names = list(steps)
        order.shuffle(names)
        for name in names:
            w, c = timed(steps[name], x, y, device)
            wall[name].append(w)
            cpu[name].append(c)
    return ({n: statistics.median(v) for n, v in wall.items()}, {n: statistics.median(v) for n, v in cpu.items()})


def print_ratios(med_wall: dict[str, float], med_cpu: dict[str, float], reference: str) -> None:
    """One line per contender: wall and thread-CPU milliseconds and their ratios to ``reference``."""
    print(f"  {'contender':<14} {'wall ms':>8} {'x ref':>6} {'cpu ms':>8} {'x ref':>6}")
    for name in med_wall:
        print(f"  {name:<14} {med_wall[name] * 1e3:8.3f} {med_wall[name] / med_wall[reference]:6.3f}"
              f" {med_cpu[name] * 1e3:8.3f} {med_cpu[name] / med_cpu[reference]:6.3f}")
