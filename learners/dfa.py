"""Direct feedback alignment (Nøkland 2016): the output error reaches every hidden layer
directly through a fixed random matrix, with no backward pass through the layers above.

One ``train_step`` = one minibatch: the shared model's forward pass, cross-entropy, and a
backward pass in which the output error e = dLoss/dlogits (B, n_classes) is sent to the
input of every connection layer after the first as e @ B_l, with B_l of shape
(n_classes, size of that input) drawn once from the run's seed and never trained. From
there it flows back through that input's dropout, pooling, activation (× f'(a)) and batch
norm to the layer below, whose weight gradient is the usual δ·xᵀ. The output layer's
update is therefore exactly backprop's. One step of the same optimizer as ``backprop``.
``true_gradient`` is the base class's (the model's own forward pass is plain autograd).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from bpbench.learners.backprop import Backprop
from bpbench.learners.base import StepOutput
from bpbench.learners.feedback import (
    ErrorTap,
    FeedbackParams,
    direct,
    draw_feedback,
    feedback_state,
    feedback_step,
    layer_input_shapes,
    load_feedback,
    output_layer,
    record_error,
)
from bpbench.learners.models import weight_layers


class DirectFeedbackAlignment(Backprop):
    """Gradient descent with the output error broadcast to every layer by fixed random matrices."""

    Params = FeedbackParams
    params: FeedbackParams

    def setup(self) -> None:
        super().setup()  # the model draws first: same init as backprop
        shapes = layer_input_shapes(self.model, self.task.input_shape)
        hidden_to_out = [name for name, _ in weight_layers(self.model)[1:]]  # the first layer's input is data
        self.feedback = {
            name: draw_feedback(
                (self.task.n_classes, math.prod(shapes[name])), self.generator, self.params.feedback_scale
            ).to(self.device)
            for name in hidden_to_out
        }
        self._output_layer = weight_layers(self.model)[-1][0]
        self._tap = ErrorTap()

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        routes = {name: direct(self._tap, b) for name, b in self.feedback.items()}
        if self._output_layer in routes:  # its backward runs first and records e for the others
            routes[self._output_layer] = record_error(self._tap, routes[self._output_layer])
        loss = feedback_step(self.model, self.optimizer, x, y, routes)
        self._tap.error = None
        return StepOutput(loss, forward_samples=x.shape[0])

    def exact_layers(self) -> frozenset[str]:
        return output_layer(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "feedback": feedback_state(self.feedback)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_feedback(self.feedback, state["feedback"])
        super().load_state_dict(state)
