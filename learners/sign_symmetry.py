"""Sign symmetry, uniform sign-concordant feedback ("uSF", Liao, Leibo & Poggio 2016; as in
BioTorch): backprop with sign(W)·s in place of Wᵀ in each layer's backward pass.

One ``train_step`` = one minibatch: the shared model's forward pass, cross-entropy, a
backward pass in which each connection layer after the first sends the error to its input
through B = sign(W)·s with s = sqrt(2 / (fan_in + fan_out)) (BioTorch's scale, which keeps
B's magnitude near the weights'), recomputed from the current W at every step, then one
step of the same optimizer as ``backprop``. Only the signs of W travel backward, never
their magnitudes. ``diagnostics`` reports the angle between W and sign(W)
(``weight_feedback_angle_deg``); ``true_gradient`` is the base class's (the model's own
forward pass is plain autograd).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import StepOutput
from bpbench.learners.feedback import angle_deg, feedback_step, output_layer, through
from bpbench.learners.models import weight_layers


def sign_feedback(layer: nn.Linear | nn.Conv2d, out: Tensor | None = None) -> Tensor:
    """sign(W) * sqrt(2 / (fan_in + fan_out)), detached from the graph (written into ``out`` if given)."""
    w = layer.weight.detach()
    receptive = math.prod(w.shape[2:])
    scale = math.sqrt(2.0 / (w.shape[1] * receptive + w.shape[0] * receptive))
    return torch.sign(w, out=out).mul_(scale) if out is not None else w.sign().mul_(scale)


class SignSymmetry(Backprop):
    """Gradient descent with the error carried backward through the signs of the weights."""

    Params = BackpropParams  # cross-entropy only (backprop's ``loss`` option is not part of this rule)

    def setup(self) -> None:
        super().setup()
        self._signs = self._feedback()  # buffers refreshed in place at every step
        layers = dict(weight_layers(self.model))
        self._routes = {name: through(layers[name], b) for name, b in self._signs.items()}

    def _feedback(self) -> dict[str, Tensor]:
        """Layer name -> its current feedback matrix (every connection layer after the first)."""
        return {name: sign_feedback(layer) for name, layer in weight_layers(self.model)[1:]}

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        for name, layer in weight_layers(self.model)[1:]:  # B = sign(W)·s of the current W
            sign_feedback(layer, out=self._signs[name])
        return StepOutput(feedback_step(self.model, self.optimizer, x, y, self._routes), forward_samples=x.shape[0])

    def exact_layers(self) -> frozenset[str]:
        return output_layer(self.model)

    def diagnostics(self) -> list[tuple[str, str, float]]:
        layers = dict(weight_layers(self.model))
        return [
            ("weight_feedback_angle_deg", name, angle_deg(layers[name].weight, b))
            for name, b in self._feedback().items()
        ]
