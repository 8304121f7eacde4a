"""Interleaved step timing for the speed benchmarks: every contender steps once per round, in a
shuffled order, so load from other processes hits all of them alike.

``interleaved_medians(steps, pool, rounds, device)`` -> (median wall seconds, median thread-CPU
seconds) per contender. ``steps``: name -> a function of one minibatch (x, y); ``pool``: distinct
minibatches, cycled (one batch repeated hundreds of times drives the loss to ~0 and optimizer
state into subnormal floats, whose slow arithmetic would time that degenerate regime).
The thread-CPU time leaves out time the thread waited for a core on a shared machine.

Shared by the benchmarks that compare a rule with backprop on MLP inputs-256-256-10:
``benchmark_parser`` (their common options), ``random_pool`` (the minibatches) and
``plain_backprop`` (the independent reference step, written in plain torch).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def interleaved_medians(
    steps: dict[str, Step], pool: list[tuple[Tensor, Tensor]], rounds: int, device: torch.device, warmup: int = 10
) -> tuple[dict[str, float], dict[str, float]]:
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
        print(
            f"  {name:<14} {med_wall[name] * 1e3:8.3f} {med_wall[name] / med_wall[reference]:6.3f}"
            f" {med_cpu[name] * 1e3:8.3f} {med_cpu[name] / med_cpu[reference]:6.3f}"
        )


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """The options every rule-against-backprop benchmark takes (add your own to the parser)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rounds", type=int, default=300, help="timed steps per contender")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inputs", type=int, default=784, help="input width (784 mnist, 64 digits)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    return p


def random_pool(batch: int, inputs: int, device: torch.device, size: int = 50) -> list[tuple[Tensor, Tensor]]:
    """``size`` distinct random minibatches (x: (batch, 1, inputs), y: 10 classes), seeded."""
    data = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(batch, 1, inputs, generator=data).to(device),
            torch.randint(0, 10, (batch,), generator=data).to(device),
        )
        for _ in range(size)
    ]


def plain_backprop(inputs: int, device: torch.device, activation: str = "relu") -> Step:
    """A backprop step in plain torch (``nn.Sequential``, cross-entropy, ``backward()``,
    ``Adam.step()``) on MLP inputs-256-256-10 with ReLU or tanh: the independent reference."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, 256), act(), nn.Linear(256, 256), act(), nn.Linear(256, 10)).to(
        device
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x: Tensor, y: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step
