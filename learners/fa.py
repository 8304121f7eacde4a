"""Feedback alignment (Lillicrap et al. 2016): backprop with a fixed random matrix B in
place of Wᵀ in each layer's backward pass.

One ``train_step`` = one minibatch: the shared model's forward pass, cross-entropy, a
backward pass in which each connection layer after the first sends the error to its input
through its own B (shape of W, drawn once from the run's seed, never trained), and one step
of the same optimizer as ``backprop``. The weight gradients themselves are the usual
δ·xᵀ, so the output layer's update is exactly backprop's. ``diagnostics`` reports the
angle between each W and its B (``weight_feedback_angle_deg``); the runner adds the cosine
with the true gradient (``grad_alignment``) through the base class's ``true_gradient``,
which differentiates the model's own (plain autograd) forward pass.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bpbench.learners.backprop import Backprop
from bpbench.learners.base import StepOutput
from bpbench.learners.feedback import (
    FeedbackParams,
    angle_deg,
    draw_feedback,
    feedback_state,
    feedback_step,
    load_feedback,
    output_layer,
    through,
)
from bpbench.learners.models import weight_layers


class FeedbackAlignment(Backprop):
    """Gradient descent with the error carried backward by fixed random feedback matrices."""

    Params = FeedbackParams
    params: FeedbackParams

    def setup(self) -> None:
        super().setup()  # the model draws first: same init as backprop
        hidden_to_out = weight_layers(self.model)[1:]  # the first layer's input is data: nothing to feed back to
        self.feedback = {
            name: draw_feedback(tuple(layer.weight.shape), self.generator, self.params.feedback_scale).to(self.device)
            for name, layer in hidden_to_out
        }

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        layers = dict(weight_layers(self.model))
        routes = {name: through(layers[name], b) for name, b in self.feedback.items()}
        return StepOutput(feedback_step(self.model, self.optimizer, x, y, routes), forward_samples=x.shape[0])

    def exact_layers(self) -> frozenset[str]:
        return output_layer(self.model)

    def diagnostics(self) -> list[tuple[str, str, float]]:
        layers = dict(weight_layers(self.model))
        return [
            ("weight_feedback_angle_deg", name, angle_deg(layers[name].weight, b)) for name, b in self.feedback.items()
        ]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "feedback": feedback_state(self.feedback)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_feedback(self.feedback, state["feedback"])
        super().load_state_dict(state)
