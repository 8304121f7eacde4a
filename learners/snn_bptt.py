"""Spiking network trained by surrogate-gradient backpropagation through time (BPTT).

The shared model with snntorch ``Leaky`` neurons (``learners.spiking``). One
``train_step`` = one minibatch: encode it over T steps, run the network, cross-entropy
on the readout (output spike counts or mean membrane), ``loss.backward()`` through all
T steps with the surrogate derivative in place of the spike's, one optimizer step.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from bpbench.learners.base import StepOutput
from bpbench.learners.models import weight_layers
from bpbench.learners.spiking import SpikingLearner, SpikingParams


class SpikingBPTT(SpikingLearner):
    """Surrogate-gradient BPTT; ``update_signal`` is the BPTT gradient of each weight layer."""

    Params = SpikingParams

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        """x: (B, C, H, W) images or (B, T, F) speech; one forward sample per example."""
        self.model.train()
        inp = self.train_input(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.net(inp), y)
        loss.backward()
        self.optimizer.step()
        return StepOutput(loss=loss.item(), forward_samples=x.shape[0])

    def update_signal(self) -> dict[str, Tensor]:
        return {n: m.weight.grad.detach().clone() for n, m in weight_layers(self.model) if m.weight.grad is not None}

    def exact_layers(self) -> frozenset[str]:
        """Every layer: the update is the BPTT surrogate gradient, which is ``true_gradient``."""
        return frozenset(n for n, _ in weight_layers(self.model))
