"""Random features: every layer but the readout frozen at its random init (``requires_grad_(False)``).

The control a learning-rule paper compares with: how far do fixed random hidden layers
get when only the last layer learns (by backprop, which there is exact)?
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bpbench import Learner, ModelSpec, StepOutput, TaskInfo, build_model, weight_layers


@dataclass(frozen=True)
class RandomFeaturesParams:
    lr: float = 1e-2
    batch_size: int = 64


class RandomFeatures(Learner):
    """Adam on the readout layer only; the hidden layers never change."""

    Params = RandomFeaturesParams

    def __init__(self, model_spec: ModelSpec, task: TaskInfo, params: RandomFeaturesParams,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__(model_spec, task, params, generator, device)
        self._model = build_model(model_spec, task.input_shape, task.n_classes, generator).to(device)
        self.layers = dict(weight_layers(self._model))
        self.readout = self.layers["out"]
        for name, parameter in self._model.named_parameters():
            parameter.requires_grad_(name.startswith("out."))
        self.optimizer = torch.optim.Adam(self.readout.parameters(), lr=params.lr)

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self._model(x), y)
        loss.backward()
        self.optimizer.step()
        return StepOutput(loss=loss.item(), forward_samples=x.shape[0])

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self._model(x)

    def update_signal(self) -> dict[str, Tensor]:
        """The readout's gradient; zero for the frozen layers (their update is zero)."""
        return {n: m.weight.grad.detach().clone() if m is self.readout else torch.zeros_like(m.weight)
                for n, m in self.layers.items()}

    def exact_layers(self) -> frozenset[str]:
        return frozenset({"out"})

    def state_dict(self) -> dict[str, Any]:
        return {"model": self._model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
