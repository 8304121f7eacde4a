"""Measurements the runner takes around a learner's step, the same way for every learner.

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around a real ``train_step``.
- Peak memory: the step's own peak, i.e. the most bytes held at once by tensors the step
  allocated. CUDA: the allocator's peak during the step minus what was allocated just
  before it (so the training set and the model the runner already moved to the device do
  not count). CPU: ``torch.profiler`` with ``profile_memory=True`` records every allocation
  and free (size and address) made while the step runs; the peak of the running sum of the
  step's own allocations is the figure. Both work for any step: one that never calls
  autograd, calls its model many times, or has frozen parameters.
- Gradient health: per-layer norms of the learner's update signal and their first/last ratio.
"""
from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile
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
    """Run ``fn`` once and return (its result, peak bytes held at once by tensors it allocated)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, int(torch.cuda.max_memory_allocated(device)) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    memory = sorted((e for e in events if e.get("name") == "[memory]" and "args" in e), key=lambda e: e["ts"])
    return result, peak_live_bytes(e["args"] for e in memory)


CPU_DEVICE_TYPE = 0  # "Device Type" of a CPU memory event in the profiler's trace (c10::DeviceType::CPU)


def peak_live_bytes(events: Iterable[dict[str, Any]]) -> int:
    """Peak of the bytes held by blocks allocated within ``events``, in their order.

    Each event is the ``args`` of one profiler "[memory]" record: ``Bytes`` (> 0: allocation,
    < 0: free) at ``Addr`` on ``Device Type``. A free of a block allocated before the events
    began (the model's weights, say) is not the step's and is ignored.
    """
    live: dict[int, int] = {}
    total = peak = 0
    for event in events:
        if event.get("Device Type") != CPU_DEVICE_TYPE:
            continue
        addr, nbytes = int(event["Addr"]), int(event["Bytes"])
        if addr in live and nbytes > 0:  # a reused address whose free was not reported
            total -= live.pop(addr)
        if nbytes > 0:
            live[addr] = nbytes
            total += nbytes
            peak = max(peak, total)
        elif addr in live:
            total -= live.pop(addr)
    return peak


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
