"""CMA-ES over the flat weight vector, with DEAP's full-covariance ``cma.Strategy``; small nets only.

One ``train_step`` = one generation, run by DEAP's own loop (``algorithms.eaGenerateUpdate``
for one generation) on the step's minibatch: ``strategy.generate`` samples ``population``
weight vectors (numpy individuals) from N(centroid, sigma^2 C); ``toolbox.map`` scores them
all in one vectorized torch forward (fitness = minus cross-entropy, or accuracy);
``strategy.update`` adapts centroid, step size and covariance.

The covariance is D x D and is eigendecomposed every generation, so this learner refuses
models with more than ``CMAES.MAX_PARAMETERS`` weights and biases (a linear model on
digits has 650). The eigendecomposition is numpy work the FLOP counter does not see; the
forward passes of all individuals are counted.

``self.model`` holds the centroid; ``loss`` is the population's mean cross-entropy on the
batch; ``update_signal`` is minus the centroid's step in one generation, per weight layer.
That step starts from the centroid, which is where the runner's ``true_gradient`` (on
``self.model``, just before the step) is taken: alignment compares at the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from deap import algorithms, base, cma
from threadpoolctl import ThreadpoolController
from torch import Tensor

from bpbench.learners.base import StepOutput
from bpbench.learners.models import ModelSpec
from bpbench.learners.params import check_params, param
from bpbench.learners.population import Fitness, FitnessKind, PopulationLearner


@dataclass(frozen=True)
class CMAESParams:
    """population: individuals per generation (lambda, >= 4; 0 = DEAP's default 4 + 3 ln D);
    sigma > 0: initial step size; fitness: "loss" (minus cross-entropy) or "accuracy" on the
    minibatch; batch_size > 0."""

    population: int = 0
    sigma: float = param(0.1, gt=0)
    fitness: FitnessKind = "loss"
    batch_size: int = param(512, ge=1)

    def __post_init__(self) -> None:
        if self.population != 0 and self.population < 4:  # "0 or >= 4": not one interval
            raise ValueError(f"population = {self.population}: must be >= 4, or 0 for DEAP's default 4 + 3 ln D")
        check_params(self)


BLAS = ThreadpoolController()


class ArrayIndividual(np.ndarray):
    """A DEAP individual for ``cma.Strategy``: a float64 numpy weight vector with a ``fitness``."""

    fitness: Fitness


def array_individual(weights: np.ndarray) -> ArrayIndividual:
    ind = np.asarray(weights).view(ArrayIndividual)
    ind.fitness = Fitness()
    return ind


class CMAES(PopulationLearner):
    """Covariance matrix adaptation evolution strategy (DEAP) on the shared model's weights."""

    Params = CMAESParams
    params: CMAESParams
    short_name = "cmaes"
    MAX_PARAMETERS = 1000  # D x D covariance, eigendecomposed every generation

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:
        super().check_model(spec, params)
        if spec.arch == "lenet":  # refused before any run: its size does not depend on the task
            raise ValueError(
                f"model.arch = 'lenet': cmaes handles at most {cls.MAX_PARAMETERS} parameters and "
                "LeNet-5 has over 50,000 in its conv layers alone; use arch = 'mlp' with hidden = []"
            )

    def setup(self) -> None:
        super().setup()
        params, task, model_spec = self.params, self.task, self.model_spec
        size = self.forward.flat.size
        if size > self.MAX_PARAMETERS:
            raise ValueError(
                f"cmaes: the model has {size} parameters on task {task.name} (input {task.input_shape}, "
                f"hidden {list(model_spec.hidden)}); CMA-ES here handles at most {self.MAX_PARAMETERS} "
                "(its D x D covariance is eigendecomposed every generation): use a smaller model, "
                "e.g. [learners.cmaes.model] hidden = [], on a task with few inputs such as digits"
            )
        centroid = self.forward.flat.flatten(self.model).double().cpu().numpy()
        extra = {"lambda_": params.population} if params.population else {}
        with self.rng, BLAS.limit(limits=torch.get_num_threads(), user_api="blas"):
            self.strategy = cma.Strategy(centroid=centroid, sigma=params.sigma, **extra)
        self.toolbox = base.Toolbox()
        self.toolbox.register("map", self._batched_map)
        self.toolbox.register("generate", self.strategy.generate, array_individual)
        self.toolbox.register("update", self.strategy.update)
        self._signal: np.ndarray | None = None

    def _batched_map(self, evaluate: Any, population: list[ArrayIndividual]) -> list[tuple[float]]:
        """DEAP's ``toolbox.map``, vectorized: all individuals in one torch forward."""
        matrix = torch.from_numpy(np.stack(population)).to(self.device, torch.float32)
        return [(v,) for v in evaluate(matrix).tolist()]

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        before = self.strategy.centroid.copy()
        self.toolbox.register("evaluate", self._score, x, y)
        # cma.Strategy samples from numpy's global RNG (swapped for this learner's own stream);
        # its eigendecomposition uses numpy's BLAS threads, held to torch's thread count
        # (the executor's share of the cores: oversubscribed BLAS threads spin and crawl).
        with self.rng, BLAS.limit(limits=torch.get_num_threads(), user_api="blas"):
            population, _ = algorithms.eaGenerateUpdate(self.toolbox, ngen=1, verbose=False)
        self._signal = before - self.strategy.centroid
        self.forward.flat.load(self.model, torch.from_numpy(self.strategy.centroid).float())
        if self._losses is None:
            raise RuntimeError("cmaes: DEAP's loop evaluated no individual")
        return StepOutput(loss=float(self._losses.mean()), forward_samples=len(population) * x.shape[0])

    def update_signal(self) -> dict[str, Tensor]:
        if self._signal is None:
            raise RuntimeError("cmaes: update_signal() before the first train_step")
        return self.forward.flat.layer_signal(torch.from_numpy(self._signal).float().to(self.device))

    def state_dict(self) -> dict[str, Any]:
        keep = ("centroid", "sigma", "pc", "ps", "C", "B", "diagD", "BD", "cond", "update_count")
        return {
            "strategy": {k: np.copy(getattr(self.strategy, k)) for k in keep},
            "rng": self.rng.state_dict(),
            "signal": self._signal,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["strategy"].items():
            setattr(self.strategy, key, np.copy(value) if value.ndim else value.item())
        self.rng.load_state_dict(state["rng"])
        self._signal = state["signal"]
        self.forward.flat.load(self.model, torch.from_numpy(self.strategy.centroid).float())
