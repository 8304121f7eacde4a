"""OpenAI-style evolution strategies (Salimans et al. 2017), as a DEAP generate/update strategy.

One ``train_step`` = one generation, run by DEAP's own loop (``algorithms.eaGenerateUpdate``
for one generation) on the step's minibatch:

- ``generate``: ``population / 2`` Gaussian directions eps; individuals are the antithetic
  pairs ``mean + sigma * eps`` and ``mean - sigma * eps`` (rows of one (P, D) tensor);
- ``toolbox.map(evaluate, population)``: the whole population in one vectorized forward;
  fitness = minus each individual's cross-entropy on the batch (or its accuracy);
- ``update``: fitness -> centered ranks in [-0.5, 0.5] (rank shaping); the loss gradient
  estimate ``g = -sum_i rank_i * eps_i / (P * sigma)``; one Adam step moves the mean along -g.

``self.model`` holds the mean; ``loss`` is the population's mean cross-entropy on the batch;
``update_signal`` is the estimate g per weight layer. g is estimated around the mean the
step starts from, which is where the runner's ``true_gradient`` (on ``self.model``, just
before the step) is taken: alignment compares the two at the same point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from deap import algorithms, base
from torch import Tensor

from bpbench.learners.base import StepOutput
from bpbench.learners.params import check_params, param
from bpbench.learners.population import FitnessKind, Population, PopulationLearner, batched_map, device_generator


@dataclass(frozen=True)
class ESParams:
    """population: even number >= 2 of perturbed copies per generation (antithetic pairs);
    sigma > 0: perturbation std; lr > 0: Adam step size on the gradient estimate;
    weight_decay >= 0: L2 coefficient added to the estimate; fitness: "loss" (minus
    cross-entropy) or "accuracy" on the minibatch; batch_size > 0."""

    population: int = param(128, ge=2)
    sigma: float = param(0.05, gt=0)
    lr: float = param(0.03, gt=0)
    weight_decay: float = param(0.0, ge=0)
    fitness: FitnessKind = "loss"
    batch_size: int = param(512, ge=1)

    def __post_init__(self) -> None:
        check_params(self)
        if self.population % 2:
            raise ValueError(f"population = {self.population}: must be an even number >= 2 (antithetic pairs)")


def centered_ranks(fitness: Tensor) -> Tensor:
    """(P,) fitness -> ranks scaled to [-0.5, 0.5], the best individual at 0.5 (ties by order)."""
    ranks = torch.empty_like(fitness)
    ranks[fitness.argsort()] = torch.arange(len(fitness), dtype=fitness.dtype, device=fitness.device)
    return ranks / (len(fitness) - 1) - 0.5


class OpenAIStrategy:
    """DEAP strategy protocol (``generate(ind_init)``, ``update(population)``) for OpenAI-ES."""

    def __init__(self, mean: Tensor, params: ESParams, noise: torch.Generator) -> None:
        self.mean = mean  # (D,), a leaf tensor Adam updates in place
        self.params = params
        self.noise = noise
        self.optimizer = torch.optim.Adam([self.mean], lr=params.lr)
        self.gradient = torch.zeros_like(mean)  # the last loss-gradient estimate
        self._eps: Tensor | None = None

    def generate(self, ind_init: Callable[[Tensor], Population]) -> Population:
        """Antithetic population: rows mean + sigma*eps (first half), mean - sigma*eps (second)."""
        half = self.params.population // 2
        self._eps = torch.randn(half, self.mean.numel(), generator=self.noise, device=self.mean.device)
        step = self.params.sigma * self._eps
        return ind_init(torch.cat([self.mean + step, self.mean - step]))

    def update(self, population: list[Tensor]) -> None:
        """Rank-shaped gradient estimate from the evaluated population, then one Adam step."""
        if self._eps is None:
            raise RuntimeError("OpenAIStrategy.update() before generate()")
        # individuals carry a DEAP fitness attribute (population.individual), which Tensor does not declare
        fitness = torch.tensor(
            [ind.fitness.values[0] for ind in population],  # type: ignore[attr-defined]
            device=self.mean.device,
        )
        shaped = centered_ranks(fitness)
        half = len(population) // 2
        fitness_gradient = (shaped[:half] - shaped[half:]) @ self._eps / (len(population) * self.params.sigma)
        self.gradient = -fitness_gradient + self.params.weight_decay * self.mean.detach()
        self.mean.grad = self.gradient.clone()
        self.optimizer.step()
        self.mean.grad = None


class EvolutionStrategies(PopulationLearner):
    """Antithetic ES with rank shaping and Adam, driven by DEAP's generate/update loop."""

    Params = ESParams
    params: ESParams
    short_name = "es"
    numpy_random = False  # its DEAP loop draws no random number (the noise is the learner's torch generator)

    def setup(self) -> None:
        super().setup()
        self.noise = device_generator(self.generator, self.device)
        self.strategy = OpenAIStrategy(self.forward.flat.flatten(self.model), self.params, self.noise)
        self.toolbox = base.Toolbox()
        self.toolbox.register("map", batched_map)
        self.toolbox.register("generate", self.strategy.generate, Population)
        self.toolbox.register("update", self.strategy.update)

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.toolbox.register("evaluate", self._score, x, y)
        with self.rng:  # DEAP's loop: generate, map(evaluate), update; own random stream
            algorithms.eaGenerateUpdate(self.toolbox, ngen=1, verbose=False)
        self.forward.flat.load(self.model, self.strategy.mean)
        if self._losses is None:
            raise RuntimeError("es: DEAP's loop evaluated no individual")
        return StepOutput(loss=float(self._losses.mean()), forward_samples=self.params.population * x.shape[0])

    def update_signal(self) -> dict[str, Tensor]:
        if self._losses is None:
            raise RuntimeError("es: update_signal() before the first train_step")
        return self.forward.flat.layer_signal(self.strategy.gradient)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mean": self.strategy.mean.detach().clone(),
            "optimizer": self.strategy.optimizer.state_dict(),
            "gradient": self.strategy.gradient.clone(),
            "rng": self.rng.state_dict(),
            "noise": self.noise.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.strategy.mean.copy_(state["mean"])
        self.strategy.optimizer.load_state_dict(state["optimizer"])
        self.strategy.gradient = state["gradient"].clone()
        self.rng.load_state_dict(state["rng"])
        self.noise.set_state(state["noise"])
        self.forward.flat.load(self.model, self.strategy.mean)
