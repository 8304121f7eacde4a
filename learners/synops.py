"""Synaptic operations of a model's connection layers while it predicts, counted the NeuroBench way.

NeuroBench (Yik et al., Nature Communications 2025): each connection layer (Linear,
Conv2d) is hooked; *dense* ops count every connection, *effective* ops only nonzero
weight x nonzero input (so a ReLU's zeros and a spike train's silences cost nothing, and a
convolution's zero-padding taps are never counted); a layer's ops are accumulates (ACs)
when its input is spikes (every value in {-1, 0, 1}), multiply-accumulates (MACs)
otherwise. Bias, pooling and normalization are not counted.

``Learner.inference_cost`` calls ``count_synops`` on the learner's own ``predict``, so
every learner with a model is counted by the same hooks. (Lives with the learners, not in
``experiments``: learners never import the experiment layer.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.learners.base import LayerOps, NotMeasurable
from bpbench.learners.models import weight_layers


def is_spike_tensor(x: Tensor, nonzero_x: Tensor | None = None) -> bool:
    """True when every value of ``x`` is -1, 0 or 1 (NeuroBench's test for spiking input).

    ``nonzero_x``: ``(x != 0)`` as x's dtype, when the caller has it: then |x| must equal it
    everywhere (0 where x is 0, 1 elsewhere), the same test in three operations instead of six.
    """
    if nonzero_x is None:
        return bool(((x == 0) | (x == 1) | (x == -1)).all())
    return bool((x.abs() == nonzero_x).all())


def layer_synops(
    layer: nn.Linear | nn.Conv2d, x: Tensor, nonzero_x: Tensor | None = None, weight_fan: Tensor | None = None
) -> tuple[float, float]:
    """(dense, effective) synaptic operations of one call of ``layer`` on input ``x`` (whole batch).

    ``nonzero_x``: ``(x != 0)`` as x's dtype, if the caller has it. ``weight_fan`` (Linear):
    ``(weight != 0).sum(0)`` as x's dtype, if the caller has it (the weights do not change
    while one forward pass is counted)."""
    if nonzero_x is None:
        nonzero_x = (x != 0).to(x.dtype)
    if isinstance(layer, nn.Linear):
        if weight_fan is None:
            weight_fan = (layer.weight != 0).to(x.dtype).sum(0)
        rows = x.reshape(-1, layer.in_features)
        dense = float(rows.shape[0] * layer.in_features * layer.out_features)
        effective = float(nonzero_x.reshape(-1, layer.in_features).sum(0) @ weight_fan)
        return dense, effective
    nonzero_w = (layer.weight != 0).to(x.dtype)
    if isinstance(layer, nn.Conv2d):
        if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            raise NotMeasurable(
                f"synaptic operations of a Conv2d with padding={layer.padding!r}, "
                f"padding_mode={layer.padding_mode!r} are not counted (integer zero padding only)"
            )

        def conv(inp: Tensor, w: Tensor) -> Tensor:
            return F.conv2d(inp, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)

        dense = float(conv(torch.ones_like(x), torch.ones_like(nonzero_w)).sum())  # padding excluded
        effective = float(conv(nonzero_x, nonzero_w).sum())
        return dense, effective
    raise NotMeasurable(f"cannot count synaptic operations of {type(layer).__name__}")


def count_synops(model: nn.Module, forward: Callable[[], object], n_samples: int) -> dict[str, LayerOps]:
    """Per-sample synaptic operations of each connection layer of ``model`` while ``forward()`` runs.

    Every call of a layer counts (a spiking net calls its layers once per time step); a layer
    ``forward`` never calls costs nothing and is left out. Raises ``NotMeasurable`` when no
    connection layer is called, or one gets spikes in some calls and analog values in others.
    """
    totals: dict[str, list[float]] = {}
    kinds: dict[str, set[bool]] = {}
    fans: dict[str, Tensor] = {}  # per Linear layer: its weight's nonzeros per input, computed once

    def hook(name: str) -> Callable[..., None]:
        def count(module: nn.Module, args: tuple[Tensor, ...], _out: Tensor) -> None:
            x = args[0].detach()
            nonzero_x = (x != 0).to(x.dtype)
            if isinstance(module, nn.Linear) and name not in fans:
                fans[name] = (module.weight != 0).to(x.dtype).sum(0)
            dense, effective = layer_synops(module, x, nonzero_x, fans.get(name))  # type: ignore[arg-type]
            acc = totals.setdefault(name, [0.0, 0.0])
            acc[0] += dense
            acc[1] += effective
            kinds.setdefault(name, set()).add(is_spike_tensor(x, nonzero_x))

        return count

    layers = weight_layers(model)
    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    try:
        with torch.no_grad():
            forward()
    finally:
        for h in handles:
            h.remove()
    if not totals:
        raise NotMeasurable(f"predict called none of the model's connection layers ({[n for n, _ in layers]})")
    out = {}
    for name, _ in layers:
        if name not in totals:
            continue
        if len(kinds[name]) != 1:
            raise NotMeasurable(f"layer {name} got spikes in some calls and analog input in others")
        dense, effective = totals[name]
        out[name] = LayerOps(dense / n_samples, effective / n_samples, kinds[name].pop())
    return out
