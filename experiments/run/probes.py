"""Measurements the runner takes around a learner's step, the same way for every learner.

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around a real ``train_step``.
- Peak memory: the step's own peak, i.e. the most bytes held at once by tensors the step
  allocated (activations, gradients, optimizer state it creates); the learner's stored state
  (weights, optimizer state, feedback, a population) is measured apart, ``state_bytes``.
  CUDA: the allocator's peak during the step minus what was allocated just before it (so
  the training set and the model the runner already moved to the device do not count).
  CPU: ``torch.profiler`` with ``profile_memory=True`` records every allocation and free
  (size and address) made while the step runs; the peak of the running sum of the step's
  own allocations is the figure. Both work for any step: one that never calls
  autograd, calls its model many times, or has frozen parameters.
- Gradient health: per-layer norms of the learner's update signal and their first/last ratio
  over the layers it trains; comparisons with the true gradient (``COMPARISONS``): per-layer
  cosine (direction) and projection coefficient (scale), each with its mean over the layers
  whose update is not exact by construction.

A measurement that cannot be taken raises ``NotMeasurable`` (or, per layer, is returned as
a reason); the runner records it as n/a with the reason (``Unmeasured``), never as a number.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from bpbench.learners.base import NotMeasurable

T = TypeVar("T")


class MetricError(RuntimeError):
    """A learner broke a promise a measurement relies on (e.g. an update signal shaped unlike
    its layer); the run fails. A measurement that merely does not apply is ``NotMeasurable``."""


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` once under the FLOP counter; returns (its result, FLOPs it performed)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


def peak_step_memory(fn: Callable[[], T], device: torch.device) -> tuple[T, int]:
    """Run ``fn`` once and return (its result, peak bytes held at once by tensors it allocated).

    On the CPU, stderr is hidden while ``fn`` runs (``quiet_stderr``): the runner passes its twin
    step here, never the learner's own.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, int(torch.cuda.max_memory_allocated(device)) - before
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    memory = sorted((e for e in events if e.get("name") == "[memory]" and "args" in e), key=lambda e: e["ts"])
    return result, peak_live_bytes(e["args"] for e in memory)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide the process's stderr (file descriptor 2) while the block runs.

    The profiler's C++ backend (Kineto) prints a "USDT ... profiler_start" and a
    "... profiler_stop" line to stderr each time a profile starts and stops, and torch's CPU
    allocator a warning whenever the profiled step frees a block allocated before profiling
    began (the model's weights, say); there is no public switch for either, so every run would
    add several lines to the console. The profiled step is the runner's *twin* step (a copy
    of the learner, off the clock), so anything it prints the learner's own step prints
    again, visibly.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def state_bytes(state: Any) -> int:
    """Bytes of the tensors (each storage once) and numpy arrays in a learner's ``state_dict()``:
    the memory its stored state holds between steps (weights, optimizer state, feedback
    matrices, a population), which the step's own peak does not include."""
    storages: dict[tuple[str, int], int] = {}
    arrays = 0

    def walk(obj: Any) -> None:
        nonlocal arrays
        if isinstance(obj, Tensor):
            storage = obj.untyped_storage()
            storages[(str(obj.device), storage.data_ptr())] = storage.nbytes()
        elif isinstance(obj, np.ndarray):
            arrays += obj.nbytes
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value)

    walk(state)
    return sum(storages.values()) + arrays


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


def gradient_norms(signal: dict[str, Tensor]) -> tuple[dict[str, float], dict[str, str]]:
    """(per-layer L2 norm of an update signal, layer -> why its norm is n/a)."""
    norms, missing = {}, {}
    for name, t in signal.items():
        value = float(t.detach().float().norm())
        if math.isfinite(value):
            norms[name] = value
        else:
            missing[name] = f"layer {name}: the update signal's norm is not finite"
    return norms, missing


def norm_ratio(norms: dict[str, float], order: list[str]) -> float:
    """First/last update-signal norm over the layers the rule trains at this step: those of
    ``order`` (forward order) with a finite, nonzero norm. A layer whose update signal is absent
    or exactly 0 (an unused readout, a frozen layer) is left out; ``NotMeasurable`` when fewer
    than two layers remain, or the net has one connection layer (the ratio is 1 by definition)."""
    if len(order) == 1:
        raise NotMeasurable("one connection layer: the first/last ratio is 1 by definition")
    trained = [name for name in order if norms.get(name, 0.0) > 0.0]
    if len(trained) < 2:
        left = ", ".join(name for name in order if name not in trained)
        raise NotMeasurable(
            f"fewer than two layers with a finite, nonzero update-signal norm (absent, zero or not "
            f"finite: {left}): the first/last ratio is undefined"
        )
    return norms[trained[0]] / norms[trained[-1]]


Pair = tuple[Tensor, Tensor, float, float]  # (update signal, true gradient) flattened in float64, their norms


def layer_pairs(
    signal: dict[str, Tensor], reference: dict[str, Tensor], what: str
) -> tuple[dict[str, Pair], dict[str, str]]:
    """(layer -> its update signal and true gradient as float64 vectors with their norms, layer -> why
    the layer cannot be compared at this step: a layer one side lacks, e.g. a frozen layer that has
    no update, a non-finite norm, or a true gradient of exactly 0; ``what`` names the comparison
    in the reason). ``MetricError`` on unequal sizes."""
    pairs, missing = {}, {}
    for layer in [*signal, *(k for k in reference if k not in signal)]:
        if layer not in reference:
            missing[layer] = f"layer {layer}: the true gradient has no such layer"
            continue
        if layer not in signal:
            missing[layer] = f"layer {layer}: the update signal has no such layer (not updated)"
            continue
        a, b = signal[layer].detach().flatten().double(), reference[layer].detach().flatten().double()
        if a.shape != b.shape:
            raise MetricError(f"layer {layer}: update signal has {a.numel()} values, true gradient {b.numel()}")
        na, nb = float(a.norm()), float(b.norm())
        if not (math.isfinite(na) and math.isfinite(nb)):
            missing[layer] = f"layer {layer}: {what} undefined, a norm is not finite"
        elif nb == 0.0:
            missing[layer] = f"layer {layer}: {what} undefined, the true gradient is exactly 0"
        else:
            pairs[layer] = (a, b, na, nb)
    return pairs, missing


PerLayer = tuple[dict[str, float], dict[str, str]]  # (layer -> value, layer -> why it is n/a)


def gradient_alignment(signal: dict[str, Tensor], reference: dict[str, Tensor]) -> PerLayer:
    """(per-layer cosine between an update signal and the true gradient on the same batch,
    layer -> why its cosine is n/a at this step: ``layer_pairs``'s reasons, or a zero update signal)."""
    pairs, missing = layer_pairs(signal, reference, "cosine")
    cosines = {}
    for layer, (a, b, na, nb) in pairs.items():
        if na == 0.0:
            missing[layer] = f"layer {layer}: cosine undefined, the update signal is exactly 0"
        else:
            cosines[layer] = float(a @ b) / (na * nb)
    return cosines, missing


def gradient_projection(signal: dict[str, Tensor], reference: dict[str, Tensor]) -> PerLayer:
    """(per-layer projection coefficient <u, g> / ||g||^2 of the update signal u on the true gradient g,
    layer -> why it is n/a at this step). 1 for the exact gradient; it measures scale, which the
    cosine ignores: 0 for an update signal of exactly 0, 0.5 for half the gradient."""
    pairs, missing = layer_pairs(signal, reference, "projection")
    coefficients = {layer: float(a @ b) / (nb * nb) for layer, (a, b, _, nb) in pairs.items()}
    return coefficients, missing


Comparison = Callable[[dict[str, Tensor], dict[str, Tensor]], PerLayer]
# per-layer comparison of an update signal with the true gradient, by metric (plan/catalog.py: LAYER_COMPARISONS)
COMPARISONS: dict[str, Comparison] = {"grad_alignment": gradient_alignment, "grad_projection": gradient_projection}


def mean_outside_exact(values: dict[str, float], exact: frozenset[str]) -> float:
    """Mean of per-layer ``values`` over the layers whose update is not exact by construction
    (``Learner.exact_layers``)."""
    free = [v for k, v in values.items() if k not in exact]
    if not free:
        if values and set(values) <= exact:
            raise NotMeasurable("every layer's update is the true gradient by construction (exact_layers)")
        raise NotMeasurable("no layer outside exact_layers has a defined value at this step")
    return sum(free) / len(free)


@contextmanager
def forked_rng(device: torch.device) -> Iterator[None]:
    """Run a block without advancing any random stream a step may draw from: torch's CPU
    generator and ``device``'s, Python's ``random`` and numpy's global generator."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@dataclass
class Unmeasured:
    """What a run could not measure: metric -> reason -> how many times (samples or evaluations)."""

    reasons: dict[str, dict[str, int]] = field(default_factory=dict)

    def note(self, metric: str, reason: str) -> None:
        counts = self.reasons.setdefault(metric, {})
        counts[reason] = counts.get(reason, 0) + 1

    def to_json(self) -> dict[str, str]:
        """metric -> its reasons, each with how often it applied, e.g. ``"... (3 times)"``."""
        return {
            metric: "; ".join(r if n == 1 else f"{r} ({n} times)" for r, n in counts.items())
            for metric, counts in self.reasons.items()
        }
