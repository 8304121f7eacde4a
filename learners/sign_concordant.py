"""Sign-concordant feedback with random magnitudes (Liao, Leibo & Poggio 2016; BioTorch's ``brsf``
and ``frsf``): backprop with B = |M| ∘ sign(W) in place of Wᵀ in each layer's backward pass.

- ``brsf`` (batchwise random magnitude): |M| is redrawn before every minibatch.
- ``frsf`` (fixed random magnitude): |M| is drawn once, when the learner is built, and kept.

M is drawn like the layer's weights (PyTorch's default init, uniform in ±1/sqrt(fan_in), from
the run's generator); sign(W) is taken from the *current* weights at every step, so only the
signs of W travel backward, never their magnitudes. One ``train_step`` = one minibatch: the
shared model's forward pass, cross-entropy, a backward pass in which each connection layer after
the first sends the error to its input through its B, then one step of the same optimizer as
``backprop``. The output layer's update is exactly backprop's (its weight gradient uses the true
output error). ``diagnostics`` reports the angle between each W and the B of the last step
(``weight_feedback_angle_deg``); ``true_gradient`` is the base class's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import StepOutput
from bpbench.learners.feedback import (
    angle_deg,
    draw_feedback,
    feedback_state,
    feedback_step,
    load_feedback,
    output_layer,
    through,
)
from bpbench.learners.models import weight_layers


class SignConcordant(Backprop):
    """Gradient descent with the error carried backward through |M| ∘ sign(W) (the shared code of brsf, frsf)."""

    Params = BackpropParams  # cross-entropy only, as sign_symmetry
    redraw: ClassVar[bool]  # True: a new magnitude every minibatch (brsf); False: drawn once (frsf)

    def setup(self) -> None:
        super().setup()  # the model draws first: same init as backprop
        hidden_to_out = weight_layers(self.model)[1:]  # the first layer's input is data: nothing to feed back to
        self.magnitude = {name: self._draw(tuple(layer.weight.shape)) for name, layer in hidden_to_out}
        self.feedback = {name: torch.empty_like(m) for name, m in self.magnitude.items()}  # B of the last step
        layers = dict(hidden_to_out)
        self._routes = {name: through(layers[name], b) for name, b in self.feedback.items()}

    def _draw(self, shape: tuple[int, ...]) -> Tensor:
        """|M|: uniform in ±1/sqrt(fan_in) (the weights' init), made positive, from the run's generator."""
        return draw_feedback(shape, self.generator).abs_().to(self.device)

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        for name, layer in weight_layers(self.model)[1:]:
            if self.redraw:
                self.magnitude[name].copy_(self._draw(tuple(layer.weight.shape)))
            torch.sign(layer.weight.detach(), out=self.feedback[name]).mul_(self.magnitude[name])
        return StepOutput(feedback_step(self.model, self.optimizer, x, y, self._routes), forward_samples=x.shape[0])

    def exact_layers(self) -> frozenset[str]:
        return output_layer(self.model)

    def diagnostics(self) -> list[tuple[str, str, float]]:
        layers = dict(weight_layers(self.model))
        return [
            ("weight_feedback_angle_deg", name, angle_deg(layers[name].weight, layers[name].weight.sign() * m))
            for name, m in self.magnitude.items()
        ]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "magnitude": feedback_state(self.magnitude)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_feedback(self.magnitude, state["magnitude"])
        super().load_state_dict(state)


class BatchwiseRandomSign(SignConcordant):
    """brSF: B = |M| ∘ sign(W), |M| redrawn before every minibatch."""

    redraw = True


class FixedRandomSign(SignConcordant):
    """frSF: B = |M| ∘ sign(W), |M| drawn once and kept for the whole run."""

    redraw = False
