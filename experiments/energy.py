"""Inference cost per sample for every learner: synaptic operations and an energy estimate.

Synaptic operations follow NeuroBench (Yik et al., Nature Communications 2025): each
connection layer (Linear, Conv2d) is hooked; *dense* ops count every connection,
*effective* ops only nonzero weight x nonzero input; a layer's ops are accumulates (ACs)
when its input is spikes (every value in {-1, 0, 1}), multiply-accumulates (MACs)
otherwise. Bias, pooling and normalization are not counted.

- A learner that knows its spikes returns per-layer counts from ``Learner.inference_cost``
  (the spiking learners call ``count_synops`` below).
- For every other learner the dense MACs come from the FLOP counter on ``predict(x)``:
  MACs = FLOPs / 2 per sample, ACs = 0, effective = dense (activation sparsity of a
  non-spiking network is not exploited: its count is an upper bound).

Energy per sample = effective MACs x E_MAC + effective ACs x E_AC, with the 45 nm
figures of Horowitz, "Computing's energy problem", ISSCC 2014 (as tabulated by Han et
al. 2015): 32-bit float multiply 3.7 pJ + 32-bit float add 0.9 pJ = 4.6 pJ per MAC;
32-bit float add 0.9 pJ per AC. Memory access energy is not included.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.experiments.measure import MetricError, count_flops
from bpbench.learners.base import LayerOps, Learner
from bpbench.learners.models import weight_layers

FLOAT32_MULT_J = 3.7e-12  # Horowitz ISSCC 2014, 45 nm, 32-bit float multiply
FLOAT32_ADD_J = 0.9e-12  # Horowitz ISSCC 2014, 45 nm, 32-bit float add
ENERGY_PER_MAC_J = FLOAT32_MULT_J + FLOAT32_ADD_J  # 4.6 pJ
ENERGY_PER_AC_J = FLOAT32_ADD_J  # 0.9 pJ

COST_METRICS = ("synops_per_sample", "synops_dense_per_sample", "macs_per_sample", "acs_per_sample",
                "energy_per_sample_j")


def is_spike_tensor(x: Tensor) -> bool:
    """True when every value of ``x`` is -1, 0 or 1 (NeuroBench's test for spiking input)."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def layer_synops(layer: nn.Linear | nn.Conv2d, x: Tensor) -> tuple[float, float]:
    """(dense, effective) synaptic operations of one call of ``layer`` on input ``x`` (whole batch)."""
    nonzero_w = (layer.weight != 0).to(x.dtype)
    nonzero_x = (x != 0).to(x.dtype)
    if isinstance(layer, nn.Linear):
        rows = x.reshape(-1, layer.in_features)
        dense = float(rows.shape[0] * layer.in_features * layer.out_features)
        effective = float(nonzero_x.reshape(-1, layer.in_features).sum(0) @ nonzero_w.sum(0))
        return dense, effective
    if isinstance(layer, nn.Conv2d):
        def conv(inp: Tensor, w: Tensor) -> Tensor:
            return F.conv2d(inp, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        dense = float(conv(torch.ones_like(x), torch.ones_like(nonzero_w)).sum())  # padding excluded
        effective = float(conv(nonzero_x, nonzero_w).sum())
        return dense, effective
    raise MetricError(f"cannot count synaptic operations of {type(layer).__name__}")


def count_synops(model: nn.Module, forward: Callable[[], object], n_samples: int) -> dict[str, LayerOps]:
    """Per-sample synaptic operations of each connection layer of ``model`` while ``forward()`` runs.

    Every call of a layer counts (a spiking net calls its layers once per time step).
    Raises if a layer is never called or gets spikes in some calls and analog values in others.
    """
    totals: dict[str, list[float]] = {}
    kinds: dict[str, set[bool]] = {}

    def hook(name: str) -> Callable[..., None]:
        def count(module: nn.Module, args: tuple[Tensor, ...], _out: Tensor) -> None:
            x = args[0].detach()
            dense, effective = layer_synops(module, x)  # type: ignore[arg-type]
            acc = totals.setdefault(name, [0.0, 0.0])
            acc[0] += dense
            acc[1] += effective
            kinds.setdefault(name, set()).add(is_spike_tensor(x))
        return count

    layers = weight_layers(model)
    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    try:
        with torch.no_grad():
            forward()
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, _ in layers:
        if name not in totals:
            raise MetricError(f"layer {name} was never called while counting synaptic operations")
        if len(kinds[name]) != 1:
            raise MetricError(f"layer {name} got spikes in some calls and analog input in others")
        dense, effective = totals[name]
        out[name] = LayerOps(dense / n_samples, effective / n_samples, kinds[name].pop())
    return out


def energy_joules(macs: float, acs: float) -> float:
    """Energy of ``macs`` multiply-accumulates and ``acs`` accumulates (32-bit float, 45 nm)."""
    return macs * ENERGY_PER_MAC_J + acs * ENERGY_PER_AC_J


def cost_rows(learner: Learner, x: Tensor) -> list[tuple[str, str, float]]:
    """Per-sample inference cost rows (metric, layer "", value) for any learner on probe batch ``x``.

    Metrics: synops_per_sample (effective), synops_dense_per_sample, macs_per_sample and
    acs_per_sample (effective), energy_per_sample_j.
    """
    n = x.shape[0]
    layers = learner.inference_cost(x)
    if layers is None:
        _, flops = count_flops(lambda: learner.predict(x))
        if flops <= 0:
            raise MetricError(f"the FLOP counter saw no operations in {type(learner).__name__}.predict")
        macs = flops / 2 / n
        dense = effective = macs
        acs = 0.0
    else:
        if not layers:
            raise MetricError(f"{type(learner).__name__}.inference_cost returned no layers")
        dense = sum(op.dense for op in layers.values())
        effective = sum(op.effective for op in layers.values())
        macs = sum(op.effective for op in layers.values() if not op.accumulate)
        acs = sum(op.effective for op in layers.values() if op.accumulate)
    return [("synops_per_sample", "", effective), ("synops_dense_per_sample", "", dense),
            ("macs_per_sample", "", macs), ("acs_per_sample", "", acs),
            ("energy_per_sample_j", "", energy_joules(macs, acs))]
