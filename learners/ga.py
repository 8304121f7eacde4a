"""Genetic algorithm over the network's weights (deep neuroevolution, Such et al. 2017), on DEAP.

One ``train_step`` = one generation on the step's minibatch:

1. every individual (a (D,) weight tensor, a row of the population) is scored in one
   vectorized forward; fitness = minus its cross-entropy (or its accuracy) on the batch;
2. DEAP selects: ``tools.selBest`` keeps the ``elites`` unchanged, ``toolbox.select`` picks
   the parents (truncation: uniformly among the ``truncation`` best, via ``selBest`` +
   ``selRandom``; or ``tools.selTournament``);
3. DEAP varies: ``algorithms.varAnd`` clones the parents, mates pairs with probability
   ``crossover`` (uniform crossover) and mutates every child (Gaussian noise of std
   ``sigma`` on every weight). The two operators are vectorized over the weights in torch
   and registered in the toolbox (DEAP's own ``mutGaussian``/``cxUniform`` loop in Python
   over each weight, far too slow for networks).

``self.model`` holds the best individual of the last evaluated generation; ``loss`` is its
cross-entropy on the minibatch. ``update_signal`` is minus the step the population mean
took in one generation (selection + variation), per weight layer. ``true_gradient`` is the
exact gradient at that same point, the mean of the population the next generation starts
from (not at ``self.model``, the best individual), so gradient alignment compares the
mean's step with the gradient where the step starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from deap import algorithms, base, tools
from torch import Tensor

from bpbench.learners.base import StepOutput
from bpbench.learners.models import build_model
from bpbench.learners.params import check_params, param
from bpbench.learners.population import (
    FitnessKind,
    Population,
    PopulationLearner,
    batched_map,
    device_generator,
    individual,
)


@dataclass(frozen=True)
class GAParams:
    """population >= 2 individuals; sigma > 0: std of the mutation on every weight;
    selection: "truncation" (parents uniformly among the ``truncation`` best) or "tournament"
    (``tournament_size`` contestants); elites: best individuals kept unchanged (0 <= elites <
    population); crossover: probability a pair of children mixes by uniform crossover;
    fitness: "loss" (minus cross-entropy) or "accuracy" on the minibatch; batch_size > 0."""

    population: int = param(64, ge=2)
    sigma: float = param(0.02, gt=0)
    selection: Literal["truncation", "tournament"] = "truncation"
    truncation: int = param(8, ge=1, le="population")
    tournament_size: int = param(3, ge=1)
    elites: int = param(1, ge=0, lt="population")
    crossover: float = param(0.0, ge=0, le=1)
    fitness: FitnessKind = "loss"
    batch_size: int = param(512, ge=1)

    def __post_init__(self) -> None:
        check_params(self)


def select_truncation(individuals: list[Tensor], k: int, keep: int) -> list[Tensor]:
    """k parents drawn uniformly among the ``keep`` fittest (Such et al. 2017's truncation)."""
    return tools.selRandom(tools.selBest(individuals, keep), k)


def mutate_gaussian(ind: Tensor, sigma: float, generator: torch.Generator) -> tuple[Tensor]:
    """Add N(0, sigma^2) to every weight of ``ind`` in place (``tools.mutGaussian``, vectorized)."""
    ind.add_(torch.randn(ind.shape, generator=generator, device=ind.device, dtype=ind.dtype), alpha=sigma)
    return (ind,)


def mate_uniform(a: Tensor, b: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Swap each weight between ``a`` and ``b`` with probability 1/2 (``tools.cxUniform``, vectorized)."""
    swap = torch.rand(a.shape, generator=generator, device=a.device) < 0.5
    a_new, b_new = torch.where(swap, b, a), torch.where(swap, a, b)
    a.copy_(a_new)
    b.copy_(b_new)
    return a, b


class Nursery:
    """The next generation's (P, D) weights, filled row by row: DEAP's ``toolbox.clone`` copies an
    individual into the next free row, so the clones DEAP makes (elites first, then the parents
    ``varAnd`` clones, in order) are already the rows of the next population, with no stacking."""

    def __init__(self, like: Tensor) -> None:
        self.matrix = torch.empty_like(like)
        self.rows = [individual(row) for row in self.matrix.unbind(0)]
        self.filled = 0

    def clone(self, ind: Tensor) -> Tensor:
        """``population.clone`` into the next free row."""
        if self.filled == len(self.rows):
            raise RuntimeError(f"ga: more than {len(self.rows)} clones in one generation")
        row = self.rows[self.filled]
        self.filled += 1
        row.copy_(ind)
        if ind.fitness.valid:  # type: ignore[attr-defined]
            row.fitness.values = ind.fitness.values  # type: ignore[attr-defined]
        return row


class GeneticAlgorithm(PopulationLearner):
    """Neuroevolution of the weights: DEAP selection and variation, vectorized fitness."""

    Params = GAParams
    params: GAParams
    short_name = "ga"
    numpy_random = False  # DEAP's selection and varAnd draw from Python's random only

    def setup(self) -> None:
        super().setup()
        params, generator, device, task = self.params, self.generator, self.device, self.task
        # Such et al.: every individual starts from its own draw of the shared initialization;
        # individual 0 is the run's shared initial network (paired with the other learners).
        inits = [self.forward.flat.flatten(self.model)]
        for _ in range(params.population - 1):
            other = build_model(self.model_spec, task.input_shape, task.n_classes, generator)
            inits.append(self.forward.flat.flatten(other).to(device))
        self.population = Population(torch.stack(inits))
        self.noise = device_generator(generator, device)
        self.toolbox = base.Toolbox()
        self.toolbox.register("map", batched_map)
        self.toolbox.register("mutate", mutate_gaussian, sigma=params.sigma, generator=self.noise)
        self.toolbox.register("mate", mate_uniform, generator=self.noise)
        if params.selection == "truncation":
            self.toolbox.register("select", select_truncation, keep=params.truncation)
        else:
            self.toolbox.register("select", tools.selTournament, tournsize=params.tournament_size)
        self._signal: Tensor | None = None

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        pop, p = self.population, self.params
        self.toolbox.register("evaluate", self._score, x, y)
        with self.rng:  # DEAP draws from Python's `random`: this learner's own stream
            for ind, fit in zip(pop, self.toolbox.map(self.toolbox.evaluate, pop)):
                ind.fitness.values = fit
            nursery = Nursery(pop.matrix)  # after the forward's temporaries are freed
            self.toolbox.register("clone", nursery.clone)
            ranked = tools.selBest(pop, len(pop))  # one sort: best, elites and truncation read it
            best = ranked[0]
            elites = [self.toolbox.clone(ind) for ind in ranked[: p.elites]]
            # truncation sorts again (selBest): on `ranked` that is the same order, and ~free
            parents = self.toolbox.select(ranked if p.selection == "truncation" else pop, len(pop) - p.elites)
            children = algorithms.varAnd(parents, self.toolbox, p.crossover, 1.0)
        if self._losses is None:
            raise RuntimeError("ga: the generation was not evaluated")
        offspring = elites + children
        if nursery.filled != len(pop) or any(a is not b for a, b in zip(offspring, nursery.rows)):
            raise RuntimeError("ga: the next generation is not the nursery's rows in order")
        best_loss = float(self._losses[_row(pop, best)])
        self.forward.flat.load(self.model, best)
        new = nursery.matrix
        self._signal = pop.matrix.mean(dim=0) - new.mean(dim=0)  # minus the population mean's step
        self.population = Population(new, offspring)
        return StepOutput(loss=best_loss, forward_samples=len(pop) * x.shape[0])

    def true_gradient(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The exact gradient at the population mean, where the next step of ``update_signal`` starts."""
        return self.forward.gradient(self.population.matrix.mean(dim=0), x, y)

    def update_signal(self) -> dict[str, Tensor]:
        if self._signal is None:
            raise RuntimeError("ga: update_signal() before the first train_step")
        return self.forward.flat.layer_signal(self._signal)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "population": self.population.matrix.clone(),
            "rng": self.rng.state_dict(),
            "noise": self.noise.get_state(),
            "signal": self._signal,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.population = Population(state["population"].clone().to(self.device))
        self.rng.load_state_dict(state["rng"])
        self.noise.set_state(state["noise"])
        self._signal = state["signal"]


def _row(pop: Population, ind: Tensor) -> int:
    """Index of individual ``ind`` (a row view) in ``pop``, by identity."""
    return next(i for i, other in enumerate(pop) if other is ind)
