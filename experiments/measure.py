"""Measurements the runner takes around a learner's step, the same way for every learner.

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around a real ``train_step``.
- Peak memory: CUDA's allocator peak on GPU; on CPU, the peak of live tensor bytes during
  one real step, tracked by ``torch.distributed._tools.mem_tracker.MemTracker``.
- Gradient health: per-layer norms of the learner's update signal and their first/last ratio.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")


class MetricError(RuntimeError):
    """A measurement could not be taken; the run fails rather than record a made-up value."""


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` once under the FLOP counter; returns (its result, FLOPs it performed)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


def peak_step_memory(fn: Callable[[], T], device: torch.device) -> tuple[T, int]:
    """Run ``fn`` once and return (its result, peak bytes of live tensors while it ran)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, int(torch.cuda.max_memory_allocated(device))
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    with tracker:
        result = fn()
    snapshot = tracker.get_tracker_snapshot("peak")
    if device not in snapshot or "Total" not in snapshot[device]:
        raise MetricError(f"MemTracker recorded nothing for device {device}")
    return result, int(snapshot[device]["Total"])


def warm_up(device: torch.device) -> None:
    """Exercise both instruments once on a tiny op, so their one-off start-up cost in a fresh
    process (about a second: lazy imports and dispatch tables) stays off a run's training clock."""
    a = torch.ones(2, 2, device=device, requires_grad=True)
    peak_step_memory(lambda: count_flops(lambda: (a @ a).sum().backward()), device)


def gradient_health(signal: dict[str, Tensor]) -> tuple[dict[str, float], float]:
    """(per-layer L2 norm, first-layer norm / last-layer norm) of an update signal."""
    if not signal:
        raise MetricError("the learner's update_signal() returned no layers")
    norms = {name: float(t.detach().float().norm()) for name, t in signal.items()}
    bad = {k: v for k, v in norms.items() if not math.isfinite(v)}
    if bad:
        raise MetricError(f"non-finite update-signal norm: {bad}")
    first, last = norms[next(iter(norms))], norms[list(norms)[-1]]
    if last == 0.0:
        raise MetricError("last layer's update-signal norm is 0: the first/last ratio is undefined")
    return norms, first / last


def gradient_alignment(signal: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, float]:
    """Per-layer cosine between a learner's update signal and the true gradient (same batch)."""
    missing = sorted(set(signal) ^ set(reference))
    if missing:
        raise MetricError(f"update signal and true gradient disagree on layers: {missing}")
    out = {}
    for layer, g in signal.items():
        a, b = g.detach().flatten().double(), reference[layer].detach().flatten().double()
        denom = float(a.norm() * b.norm())
        if denom == 0.0 or not math.isfinite(denom):
            raise MetricError(f"layer {layer}: cosine undefined (norms {float(a.norm())}, {float(b.norm())})")
        out[layer] = float(a @ b) / denom
    return out
