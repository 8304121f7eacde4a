"""Learners of the shapes a new rule commonly takes, defined here (not registered) for the
measurement tests: one that calls its model several times per step without autograd, one
with frozen parameters, and one without a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bpbench.learners.backprop import Backprop
from bpbench.learners.base import Learner, NotMeasurable, StepOutput, TaskInfo
from bpbench.learners.models import ModelSpec, build_model, weight_layers


@dataclass(frozen=True)
class PerturbationParams:
    lr: float = 0.05
    sigma: float = 1e-3
    directions: int = 4
    batch_size: int = 64


class WeightPerturbation(Learner):
    """Forward-only: a central-difference gradient estimate along random directions, taken by
    calling the model 2 x ``directions`` times per step (no autograd anywhere)."""

    Params = PerturbationParams

    def __init__(
        self,
        model_spec: ModelSpec,
        task: TaskInfo,
        params: PerturbationParams,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        super().__init__(model_spec, task, params, generator, device)
        self.model = build_model(model_spec, task.input_shape, task.n_classes, generator).to(device)
        self._signal: dict[str, Tensor] = {}

    @torch.no_grad()
    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        weights = [m.weight for _, m in weight_layers(self.model)]
        estimate = [torch.zeros_like(w) for w in weights]
        for _ in range(self.params.directions):
            noise = [torch.randn(w.shape, generator=self.generator).to(w.device) for w in weights]
            for w, u in zip(weights, noise):
                w.add_(u, alpha=self.params.sigma)
            plus = F.cross_entropy(self.model(x), y)
            for w, u in zip(weights, noise):
                w.sub_(u, alpha=2 * self.params.sigma)
            minus = F.cross_entropy(self.model(x), y)
            for w, u, e in zip(weights, noise, estimate):
                w.add_(u, alpha=self.params.sigma)
                e.add_(u, alpha=float(plus - minus) / (2 * self.params.sigma * self.params.directions))
        for w, e in zip(weights, estimate):
            w.sub_(e, alpha=self.params.lr)
        self._signal = {n: e for (n, _), e in zip(weight_layers(self.model), estimate)}
        loss = float(F.cross_entropy(self.model(x), y))
        return StepOutput(loss, forward_samples=x.shape[0] * (2 * self.params.directions + 1))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.model(x)

    def update_signal(self) -> dict[str, Tensor]:
        return {n: e.clone() for n, e in self._signal.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"])


class FrozenFeatures(Backprop):
    """Backprop that trains only the output layer: every other parameter is frozen
    (``requires_grad_(False)``), a random-features control."""

    def __init__(
        self, model_spec: ModelSpec, task: TaskInfo, params: Any, generator: torch.Generator, device: torch.device
    ) -> None:
        super().__init__(model_spec, task, params, generator, device)
        out = weight_layers(self.model)[-1][1]
        for p in self.model.parameters():
            p.requires_grad_(False)
        out.requires_grad_(True)


@dataclass(frozen=True)
class CentroidParams:
    batch_size: int = 64


class NearestCentroid(Learner):
    """No model and no gradient: running class means; scores are minus squared distances
    (up to a per-sample constant), one (B, F) x (F, classes) product."""

    Params = CentroidParams

    def __init__(
        self,
        model_spec: ModelSpec,
        task: TaskInfo,
        params: CentroidParams,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        super().__init__(model_spec, task, params, generator, device)
        features = int(torch.tensor(task.input_shape).prod())
        self.sums = torch.zeros(task.n_classes, features, device=device)
        self.counts = torch.zeros(task.n_classes, device=device)

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.sums.index_add_(0, y, x.flatten(1))
        self.counts.index_add_(0, y, torch.ones_like(y, dtype=self.counts.dtype))
        return StepOutput(float(F.cross_entropy(self.predict(x), y)), forward_samples=x.shape[0])

    def predict(self, x: Tensor) -> Tensor:
        """Minus the squared distance to each class mean: 2 x.m - |m|^2 (- |x|^2, the same for every class)."""
        means = self.sums / self.counts.clamp(min=1).unsqueeze(1)
        return 2 * x.flatten(1) @ means.T - means.square().sum(1)

    def update_signal(self) -> dict[str, Tensor]:
        raise NotMeasurable("nearest centroid has no weights and no gradient-like update")

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums.copy_(state["sums"])
        self.counts.copy_(state["counts"])
