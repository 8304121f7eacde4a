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

import torch.nn.functional as F
from torch import Tensor, nn

from learners.backprop import Backprop
from learners.base import StepOutput
from learners.feedback import angle_deg, feedback_forward, through
from learners.models import weight_layers


def sign_feedback(layer: nn.Linear | nn.Conv2d) -> Tensor:
    """sign(W) * sqrt(2 / (fan_in + fan_out)), detached from the graph."""
    w = layer.weight.detach()
    receptive = math.prod(w.shape[2:])
    scale = math.sqrt(2.0 / (w.shape[1] * receptive + w.shape[0] * receptive))
    return w.sign().mul_(scale)


class SignSymmetry(Backprop):
    """Gradient descent with the error carried backward through the signs of the weights."""

    def _feedback(self) -> dict[str, Tensor]:
        """Layer name -> its current feedback matrix (every connection layer after the first)."""
        return {name: sign_feedback(layer) for name, layer in weight_layers(self._model)[1:]}

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self._model.train()
        self.optimizer.zero_grad(set_to_none=True)
        layers = dict(weight_layers(self._model))
        routes = {name: through(layers[name], b) for name, b in self._feedback().items()}
        loss = F.cross_entropy(feedback_forward(self._model, x, routes), y)
        loss.backward()
        self.optimizer.step()
        return StepOutput(loss=loss.item(), forward_samples=x.shape[0])

    def diagnostics(self) -> list[tuple[str, str, float]]:
        layers = dict(weight_layers(self._model))
        return [("weight_feedback_angle_deg", name, angle_deg(layers[name].weight, b))
                for name, b in self._feedback().items()]
