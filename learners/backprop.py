"""Backpropagation: the reference learner, and the template to copy for a new rule.

One ``train_step`` = one minibatch: forward, the top loss (``loss``: cross-entropy, or "mse":
the squared error ½‖z − onehot(y)‖² that pc's ``top_loss = "mse"`` trains, its like-for-like
partner), ``loss.backward()``, one optimizer step (SGD with momentum, or Adam). Copy this file, change ``train_step``
and ``update_signal``, register it under the ``bpbench.learners`` entry point, done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from bpbench.learners.base import Learner, StepOutput, TaskInfo
from bpbench.learners.losses import LossName, check_loss, top_loss
from bpbench.learners.models import ModelSpec, build_model, weight_layers
from torch import Tensor


@dataclass(frozen=True)
class BackpropParams:
    """optimizer: sgd | adam; lr > 0; momentum (sgd only) in [0, 1); weight_decay >= 0."""

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr = {self.lr}: must be > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum = {self.momentum}: allowed is 0 <= momentum < 1")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay = {self.weight_decay}: must be >= 0")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size = {self.batch_size}: must be a positive integer")


@dataclass(frozen=True)
class BackpropLossParams(BackpropParams):
    """BackpropParams plus loss: "ce" (cross-entropy) | "mse" (½‖z − onehot(y)‖², pc's squared error)."""

    loss: LossName = "ce"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_loss("loss", self.loss)


def make_optimizer(params: BackpropParams, tensors: Any) -> torch.optim.Optimizer:
    """The optimizer ``params`` names over ``tensors`` (shared by gradient-based learners).

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

    def __init__(self, model_spec: ModelSpec, task: TaskInfo, params: BackpropParams,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__(model_spec, task, params, generator, device)
        self._model = build_model(model_spec, task.input_shape, task.n_classes, generator).to(device)
        self.optimizer = make_optimizer(params, self._model.parameters())

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self._model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.objective(self._model(x), y)
        loss.backward()
        self.optimizer.step()
        return StepOutput(loss=loss.item(), forward_samples=x.shape[0])

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        """The ``loss`` option's top loss (subclasses whose Params have no ``loss`` train cross-entropy)."""
        return top_loss(logits, y, getattr(self.params, "loss", "ce"))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        was_training = self._model.training
        self._model.eval()
        out = self._model(x)
        self._model.train(was_training)
        return out

    def update_signal(self) -> dict[str, Tensor]:
        return {n: m.weight.grad.detach().clone() for n, m in weight_layers(self._model) if m.weight.grad is not None}

    def exact_layers(self) -> frozenset[str]:
        """Every layer: the update is the true gradient itself."""
        return frozenset(n for n, _ in weight_layers(self._model))

    def state_dict(self) -> dict[str, Any]:
        return {"model": self._model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
