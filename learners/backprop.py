"""Backpropagation: the reference learner, and the template to copy for a new rule.

One ``train_step`` = one minibatch: forward, the top loss (``loss``: cross-entropy, or "mse":
the squared error ½‖z − onehot(y)‖² that pc's ``top_loss = "mse"`` trains, its like-for-like
partner), ``loss.backward()``, one optimizer step (SGD with momentum, or Adam). ``bpbench new
learner NAME`` writes a plugin package whose learner is this one (a test checks they agree),
ready to become a new rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bpbench.learners.base import Learner, StepOutput
from bpbench.learners.losses import LossName, top_loss
from bpbench.learners.models import build_model, weight_layers
from bpbench.learners.params import check_params, param


@dataclass(frozen=True)
class BackpropParams:
    """optimizer: sgd | adam; lr > 0; momentum (sgd only) in [0, 1); weight_decay >= 0; batch_size >= 1.

    The standard optimizer options: subclass it to give a rule the same options (``make_optimizer``)."""

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = param(1e-3, gt=0)
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(0.0, ge=0)
    batch_size: int = param(64, ge=1)

    def __post_init__(self) -> None:
        check_params(self)


@dataclass(frozen=True)
class BackpropLossParams(BackpropParams):
    """BackpropParams plus loss: "ce" (cross-entropy) | "mse" (½‖z − onehot(y)‖², pc's squared error)."""

    loss: LossName = "ce"  # a Literal: check_params refuses other values


def make_optimizer(params: BackpropParams, tensors: Any) -> torch.optim.Optimizer:
    """The optimizer ``params`` names over ``tensors`` (shared by gradient-based learners and plugins).

    ``params``: anything with BackpropParams' ``optimizer``, ``lr``, ``momentum`` and ``weight_decay``
    (a subclass of it, usually); ``tensors``: the parameters (or parameter groups) to update.

    Adam with ``foreach=True`` (torch's default on CUDA, not on CPU): each update is a few calls
    over all tensors instead of a Python loop over them; the same element-wise arithmetic, so
    the same weights, in less time (its temporaries exist for all tensors at once: the step's
    peak memory is lower for most models, slightly higher where the layers are of equal size).
    SGD keeps torch's default: there foreach materializes every decayed gradient at once."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(tensors, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)
    return torch.optim.Adam(tensors, lr=params.lr, weight_decay=params.weight_decay, foreach=True)


class Backprop(Learner):
    """Gradient descent with gradients from ``torch.autograd`` (exact backpropagation)."""

    Params: type = BackpropLossParams
    params: BackpropParams
    model: nn.Sequential

    def setup(self) -> None:
        """The shared network (the run's first draws from the generator) and the optimizer."""
        self.model = build_model(self.model_spec, self.task.input_shape, self.task.n_classes, self.generator).to(
            self.device
        )
        self.optimizer = make_optimizer(self.params, self.model.parameters())

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.objective(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return StepOutput(loss=loss.item(), forward_samples=x.shape[0])

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        """The ``loss`` option's top loss (subclasses whose Params have no ``loss`` train cross-entropy)."""
        return top_loss(logits, y, getattr(self.params, "loss", "ce"))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        out = self.model(x)
        self.model.train(was_training)
        return out

    def update_signal(self) -> dict[str, Tensor]:
        return {n: m.weight.grad.detach().clone() for n, m in weight_layers(self.model) if m.weight.grad is not None}

    def exact_layers(self) -> frozenset[str]:
        """Every layer: the update is the true gradient itself."""
        return frozenset(n for n, _ in weight_layers(self.model))

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
