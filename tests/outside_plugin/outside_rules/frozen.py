"""Random features: every layer but the readout frozen at its random init (``requires_grad_(False)``).

The control a learning-rule paper compares with: how far do fixed random hidden layers get
when only the last layer learns (by backprop, which is exact there)?
"""
from __future__ import annotations

import torch
from torch import Tensor

from bpbench import ModelSpec, TaskInfo, weight_layers
from bpbench.learners.backprop import Backprop, BackpropParams


class RandomFeatures(Backprop):
    """Backprop's optimizer on the readout only; the hidden layers never change."""

    def __init__(self, model_spec: ModelSpec, task: TaskInfo, params: BackpropParams,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__(model_spec, task, params, generator, device)
        for name, parameter in self._model.named_parameters():
            parameter.requires_grad_(name.startswith("out."))

    def update_signal(self) -> dict[str, Tensor]:
        """The readout's gradient; zero for the frozen layers (their update is zero)."""
        return {n: m.weight.grad.clone() if m.weight.grad is not None else torch.zeros_like(m.weight)
                for n, m in weight_layers(self._model)}

    def exact_layers(self) -> frozenset[str]:
        return frozenset({"out"})
