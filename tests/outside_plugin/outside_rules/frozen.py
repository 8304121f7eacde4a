"""Random features: every layer but the readout frozen at its random init (``requires_grad_(False)``).

The control a learning-rule paper compares with: how far do fixed random hidden layers get
when only the last layer learns (by backprop, which is exact there)? Built on bpbench's exported
``Backprop`` through the ``setup`` hook.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bpbench import Backprop, weight_layers


class RandomFeatures(Backprop):
    """Backprop's optimizer on the readout only; the hidden layers never change."""

    def setup(self) -> None:
        super().setup()
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name.startswith("out."))

    def update_signal(self) -> dict[str, Tensor]:
        """The readout's gradient; zero for the frozen layers (their update is zero)."""
        return {
            n: m.weight.grad.clone() if m.weight.grad is not None else torch.zeros_like(m.weight)
            for n, m in weight_layers(self.model)
        }

    def exact_layers(self) -> frozenset[str]:
        return frozenset({"out"})
