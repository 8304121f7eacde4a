"""Weight perturbation: a forward-only rule that calls its model many times per step.

Each step draws ``directions`` random perturbations u of all weights and evaluates the
loss at w + sigma*u and w - sigma*u (antithetic pairs): 2*directions+1 forward passes, no
autograd. The estimate g = mean((L+ - L-) / (2 sigma) * u) feeds Adam. The same shape as
predictive coding's inference loop or forward-forward's positive and negative passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench import Learner, StepOutput, build_model, check_params, param, weight_layers


@dataclass(frozen=True)
class PerturbParams:
    """directions >= 1 antithetic pairs per step; sigma > 0 the perturbation scale; lr > 0 (Adam)."""

    directions: int = param(16, ge=1)
    sigma: float = param(1e-3, gt=0)
    lr: float = param(3e-3, gt=0)
    batch_size: int = param(64, ge=1)

    def __post_init__(self) -> None:
        check_params(self)


class WeightPerturbation(Learner):
    """Antithetic weight perturbation with Adam on the estimated gradient (no autograd)."""

    Params = PerturbParams
    params: PerturbParams
    model: nn.Sequential

    def setup(self) -> None:
        self.model = build_model(self.model_spec, self.task.input_shape, self.task.n_classes, self.generator).to(
            self.device
        )
        self.tensors = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(self.tensors, lr=self.params.lr)
        self.estimate: list[Tensor] = [torch.zeros_like(t) for t in self.tensors]

    @torch.no_grad()
    def _loss(self, x: Tensor, y: Tensor) -> float:
        return float(F.cross_entropy(self.model(x), y))

    @torch.no_grad()
    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        p = self.params
        loss = self._loss(x, y)
        estimate = [torch.zeros_like(t) for t in self.tensors]
        for _ in range(p.directions):
            noise = [torch.randn(t.shape, generator=self.generator).to(t.device) for t in self.tensors]
            for t, u in zip(self.tensors, noise):
                t.add_(u, alpha=p.sigma)
            plus = self._loss(x, y)
            for t, u in zip(self.tensors, noise):
                t.add_(u, alpha=-2 * p.sigma)
            minus = self._loss(x, y)
            for t, u, g in zip(self.tensors, noise, estimate):
                t.add_(u, alpha=p.sigma)
                g.add_(u, alpha=(plus - minus) / (2 * p.sigma * p.directions))
        for t, g in zip(self.tensors, estimate):
            t.grad = g
        self.optimizer.step()
        self.estimate = estimate
        return StepOutput(loss=loss, forward_samples=x.shape[0] * (2 * p.directions + 1))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.model(x)

    def update_signal(self) -> dict[str, Tensor]:
        by_tensor = {id(t): g for t, g in zip(self.tensors, self.estimate)}
        return {n: by_tensor[id(m.weight)].clone() for n, m in weight_layers(self.model)}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
