"""What the population learners (ga, cmaes, es) share: flat weights, one vectorized forward, DEAP glue.

- ``FlatWeights``: the shared model's parameters <-> one flat vector (D,); a population is a
  (P, D) tensor, one row per individual.
- ``PopulationForward``: logits (P, B, C) and fitness (P,) of a whole population on one
  minibatch in a single vectorized forward (batched matmuls / grouped convolutions over the
  layers of the model ``learners.models.build_model`` built), never one network at a time.
  It runs in torch, so the runner's FLOP counter sees every forward pass of every individual.
- ``Fitness`` and ``individuals``: DEAP individuals are rows of that tensor carrying a
  ``fitness`` attribute (a ``deap.base.Fitness``); the classes live here, not in DEAP's
  global ``creator`` module, so nothing leaks between learners.
- ``PopulationLearner``: the learners' common frame: the shared model holding the current
  solution (for ``predict`` and the runner's true gradient), the vectorized forward, the
  private random stream, and fitness scoring of a stacked population.
- ``PrivateRandom``: DEAP's operators draw from Python's global ``random`` (selection,
  variation) and numpy's global RNG (``cma.Strategy``). Every DEAP call runs inside
  ``with self.rng:``, which swaps in this learner's own RNG states and puts the caller's
  back afterwards: a seed alone fixes a run, and two runs in one process do not interfere.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from deap import base
from torch import Tensor, nn

from bpbench.learners.base import Learner
from bpbench.learners.models import PLAIN_ARCHS, ModelSpec, build_model, weight_layers

FitnessKind = Literal["loss", "accuracy"]


def check_population_model(spec: ModelSpec, learner: str) -> None:
    """Refuse what a population forward cannot evaluate faithfully (batch-norm state, dropout noise)."""
    if spec.batchnorm:
        raise ValueError(
            f"{learner}: model.batchnorm = true is not supported by population learners "
            "(running statistics are not evolved); use batchnorm = false"
        )
    if spec.dropout > 0:
        raise ValueError(
            f"{learner}: model.dropout = {spec.dropout} is not supported by population learners "
            "(it would make fitness random); use dropout = 0"
        )


class FlatWeights:
    """The model's parameters in ``named_parameters`` order, laid end to end in one vector."""

    def __init__(self, model: nn.Module) -> None:
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.size = sum(self.sizes)
        self.weight_names = [f"{n}.weight" for n, _ in weight_layers(model)]

    def flatten(self, model: nn.Module) -> Tensor:
        """(D,) copy of the model's current parameters."""
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of ``flat`` shaped as parameters; flat (D,) -> shapes, (P, D) -> (P, *shape)."""
        lead = tuple(flat.shape[:-1])
        chunks = torch.split(flat, self.sizes, dim=-1)
        return {n: c.reshape(*lead, *s) for n, c, s in zip(self.names, chunks, self.shapes)}

    def load(self, model: nn.Module, flat: Tensor) -> None:
        """Copy ``flat`` (D,) into the model's parameters."""
        with torch.no_grad():
            for p, v in zip(model.parameters(), self.unflatten(flat).values()):
                p.copy_(v)

    def layer_signal(self, flat: Tensor) -> dict[str, Tensor]:
        """The weight part of a flat (D,) signal per connection layer (``update_signal``'s format)."""
        parts = self.unflatten(flat)
        return {n.removesuffix(".weight"): parts[n].clone() for n in self.weight_names}


class PopulationForward:
    """Vectorized evaluation of many weight vectors of one architecture on one minibatch.

    Walks the shared ``nn.Sequential`` layer by layer with the population as an extra axis:
    a Linear becomes one batched matmul over all individuals, a Conv2d one grouped
    convolution (individual p owns channel group p); activations and pooling apply as is.
    (``torch.func.vmap`` over ``functional_call`` would do the same.)
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flat = FlatWeights(model)
        for name, module in model.named_children():
            if not isinstance(module, (nn.Linear, nn.Conv2d)) and any(True for _ in module.parameters()):
                raise ValueError(
                    f"layer {name} ({type(module).__name__}) has parameters a population forward cannot batch"
                )

    @torch.no_grad()
    def logits(self, population: Tensor, x: Tensor) -> Tensor:
        """population (P, D), x (B, ...) -> logits (P, B, n_classes), one forward for all P."""
        if population.ndim != 2 or population.shape[1] != self.flat.size:
            raise ValueError(f"population has shape {tuple(population.shape)}, expected (P, {self.flat.size})")
        params, p = self.flat.unflatten(population), population.shape[0]
        h, batched = x, False  # batched: h has the population axis, conv (B, P*C, H, W) or dense (P, B, F)
        for name, module in self.model.named_children():
            if isinstance(module, nn.Conv2d):
                w, b = params[f"{name}.weight"], params[f"{name}.bias"]
                h = F.conv2d(
                    h,
                    w.flatten(0, 1),
                    b.flatten(),
                    module.stride,
                    module.padding,
                    module.dilation,
                    groups=p if batched else 1,
                )
                batched = True
            elif isinstance(module, nn.Flatten):
                h = h.reshape(h.shape[0], p, -1).transpose(0, 1) if batched else h.flatten(1)
            elif isinstance(module, nn.Linear):
                w, b = params[f"{name}.weight"], params[f"{name}.bias"]
                if batched:
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                else:  # shared input: one (B, in) x (in, P*out) product
                    h = torch.einsum("bi,poi->pbo", h, w) + b.unsqueeze(1)
                batched = True
            else:
                h = module(h)
        return h

    def gradient(self, flat: Tensor, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Exact gradient of the mean cross-entropy at the weights ``flat`` (D,), per weight layer
        (``update_signal``'s format). The model's own parameters are not touched."""
        point = flat.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = torch.func.functional_call(self.model, self.flat.unflatten(point), (x,))
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), point)
        return self.flat.layer_signal(grad)

    @torch.no_grad()
    def evaluate(self, population: Tensor, x: Tensor, y: Tensor, kind: FitnessKind) -> tuple[Tensor, Tensor]:
        """(fitness (P,), mean cross-entropy (P,)); fitness, higher is better, is minus the
        cross-entropy ("loss") or the accuracy ("accuracy") on the minibatch."""
        logits = self.logits(population, x)
        losses = cross_entropies(logits, y)
        if kind == "accuracy":
            return (logits.argmax(dim=2) == y).float().mean(dim=1), losses
        return -losses, losses


def cross_entropies(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per individual: logits (P, B, C), labels (B,) -> (P,).

    Written as logsumexp minus the true-class logit: the same value as ``F.cross_entropy``,
    about 4x faster on CPU for few classes (log_softmax over a short last axis is slow).
    """
    true_class = logits.gather(2, y.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(2)
    return (torch.logsumexp(logits, dim=2) - true_class).mean(dim=1)


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from the run's generator (noise is drawn where it is used)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


class Fitness(base.Fitness):
    """One maximized objective (minus loss, or accuracy); module-local instead of ``creator``."""

    weights = (1.0,)

    def __init__(self, values: tuple[float, ...] = ()) -> None:
        # DEAP's own __init__ checks on every instance that ``weights`` is a Sequence (an abc
        # isinstance, the costliest part of making an individual); this class's weights are fixed.
        if values:
            self.values = values


class Population(list):
    """A list of DEAP individuals that are the rows of ``matrix`` (P, D), so evaluation needs no copy.

    ``rows``: the individuals, when they already are ``matrix``'s rows in order (else made here)."""

    def __init__(self, matrix: Tensor, rows: list[Tensor] | None = None) -> None:
        super().__init__(rows if rows is not None else (individual(row) for row in matrix.unbind(0)))
        self.matrix = matrix


def individual(weights: Tensor) -> Tensor:
    """A DEAP individual: the (D,) weight tensor itself, with an unset ``fitness`` attached."""
    weights.fitness = Fitness()  # type: ignore[attr-defined]
    return weights


def clone(ind: Tensor) -> Tensor:
    """A copy of an individual (weights and fitness): DEAP's ``toolbox.clone`` for tensors."""
    copy = individual(ind.clone())
    if ind.fitness.valid:  # type: ignore[attr-defined]
        copy.fitness.values = ind.fitness.values  # type: ignore[attr-defined]
    return copy


def stack(population: Sequence[Tensor]) -> Tensor:
    """(P, D) weights of a population (no copy when it is a ``Population``)."""
    matrix = getattr(population, "matrix", None)
    return matrix if matrix is not None else torch.stack(list(population))


def batched_map(evaluate: Callable[[Tensor], Tensor], population: Sequence[Tensor]) -> list[tuple[float]]:
    """DEAP's ``toolbox.map`` made vectorized: ``evaluate`` scores the stacked population at once."""
    values = evaluate(stack(population))
    return [(v,) for v in values.tolist()]


class PrivateRandom:
    """This learner's own states of Python's and numpy's global RNGs, swapped in by ``with``.

    ``numpy=False``: the learner's DEAP calls never draw from numpy (ga, es), so only Python's
    state is swapped (numpy's swap is ~0.1 ms a generation); the numpy state is still kept.
    """

    def __init__(self, generator: torch.Generator, numpy: bool = True) -> None:
        self.numpy = numpy
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        saved_py, saved_np = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        self.python_state: Any = random.getstate()
        self.numpy_state: Any = np.random.get_state()
        random.setstate(saved_py)
        np.random.set_state(saved_np)
        self._outer: list[tuple[Any, Any]] = []

    def __enter__(self) -> PrivateRandom:
        self._outer.append((random.getstate(), np.random.get_state() if self.numpy else None))
        random.setstate(self.python_state)
        if self.numpy:
            np.random.set_state(self.numpy_state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.python_state = random.getstate()
        outer_py, outer_np = self._outer.pop()
        random.setstate(outer_py)
        if self.numpy:
            self.numpy_state = np.random.get_state()
            np.random.set_state(outer_np)

    def state_dict(self) -> dict[str, Any]:
        return {"python": self.python_state, "numpy": self.numpy_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.python_state, self.numpy_state = state["python"], state["numpy"]


class PopulationLearner(Learner):
    """Base of the evolutionary learners: one ``train_step`` = one generation.

    ``setup`` sets ``self.model`` (the shared network, holding the current solution), ``self.forward``
    (vectorized population forward), ``self.rng`` (private random stream for DEAP) and
    ``self._losses`` (cross-entropies of the last evaluated generation, set by ``_score``);
    a subclass's ``setup`` calls it first.
    """

    short_name: str = "population"  # used in error messages
    archs = PLAIN_ARCHS  # the population forward batches plain nets only
    numpy_random: ClassVar[bool] = True  # whether its DEAP calls draw from numpy's global RNG (PrivateRandom)
    model: nn.Sequential

    def setup(self) -> None:
        self.model = build_model(self.model_spec, self.task.input_shape, self.task.n_classes, self.generator).to(
            self.device
        )
        self.forward = PopulationForward(self.model)
        self.rng = PrivateRandom(self.generator, numpy=self.numpy_random)
        self._losses: Tensor | None = None

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:
        super().check_model(spec, params)
        check_population_model(spec, cls.short_name)

    def _score(self, x: Tensor, y: Tensor, matrix: Tensor) -> Tensor:
        """Fitness (P,) of the population ``matrix`` (P, D) on (x, y); keeps the losses."""
        fitness, self._losses = self.forward.evaluate(matrix, x, y, self.params.fitness)
        return fitness

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.model(x)
