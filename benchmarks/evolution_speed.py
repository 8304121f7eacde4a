"""Generation time of the ``ga`` learner against bare stacked-weights GAs and DEAP's stock ``eaSimple``.

Setting: population 64, digits, MLP 64-32-10 (tanh, or relu), 512 samples per generation,
Gaussian mutation (sigma .02) of every child, no crossover. Four implementations of one
generation on the same minibatch:

- ``ga``: this repo's learner (DEAP selection + ``varAnd``, tensor individuals, one
  vectorized forward for the population);
- ``bare``: the generation written from scratch with no learner code: the
  population's weights as (P, in, out) tensors (views of one (P, D) matrix), a ``baddbmm``
  forward per layer, logsumexp cross-entropy, ``argsort``, index the parents, one ``randn``
  for all children. It shares nothing with the learner, so it shows the learner's overhead;
- ``pure torch``: the same selection and mutation with no DEAP, but the learner's own
  population forward (``PopulationForward``): shows the cost of DEAP alone;
- ``DEAP stock``: ``algorithms.eaSimple`` with Python-list individuals, ``tools.mutGaussian``,
  ``tools.selTournament``, and one network evaluated at a time.

The script first checks that the bare forward scores a population exactly as the learner's
forward does. Prints ms per generation (best of ``--repeats`` timed blocks, blocks
interleaved) and the ratios with their targets: ga / bare (target <= 1.25),
ga / pure torch (<= 1.5) and DEAP stock / ga (>= 10).

    python -m benchmarks.evolution_speed [--repeats 5] [--generations 20] [--threads 1] [--activation tanh]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from deap import algorithms, base, tools

from bpbench.learners.ga import GAParams, GeneticAlgorithm
from bpbench.learners.models import ModelSpec, build_model
from bpbench.learners.population import Fitness, PopulationForward, cross_entropies
from bpbench.tasks.digits import Digits

POPULATION, BATCH, SIGMA, ELITES, TRUNCATION = 64, 512, 0.02, 1, 8


def pure_torch_generation(
    forward: PopulationForward, generator: torch.Generator
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """One GA generation in plain torch: evaluate all, keep the elite, truncation + mutation."""

    def step(pop: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fitness = -cross_entropies(forward.logits(pop, x), y)
        order = fitness.argsort(descending=True)
        parents = order[torch.randint(0, TRUNCATION, (POPULATION - ELITES,), generator=generator)]
        children = pop[parents] + SIGMA * torch.randn(POPULATION - ELITES, pop.shape[1], generator=generator)
        return torch.cat([pop[order[:ELITES]], children])

    return step


class BareGA:
    """One GA generation from scratch: weights (P, in, out) per layer, views of one (P, D) matrix."""

    def __init__(
        self, population: torch.Tensor, layers: list[tuple[int, int]], activation: str, generator: torch.Generator
    ) -> None:
        self.layers, self.generator = layers, generator
        self.act = torch.tanh if activation == "tanh" else torch.relu
        self.flat = population

    def weights(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(w (P, in, out), b (P, 1, out)) per layer: views of ``flat`` (P, D), weights first."""
        out, at, p = [], 0, flat.shape[0]
        for n_in, n_out in self.layers:
            w = flat[:, at : at + n_in * n_out].view(p, n_in, n_out)
            at += n_in * n_out
            b = flat[:, at : at + n_out].view(p, 1, n_out)
            at += n_out
            out.append((w, b))
        return out

    def losses(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (P,) of every individual on (x, y)."""
        layers = self.weights(flat)
        h = x.flatten(1).expand(flat.shape[0], -1, -1)
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b, h, w)
            if i < len(layers) - 1:
                h = self.act(h)
        true_class = h.gather(2, y.view(1, -1, 1).expand(h.shape[0], -1, 1)).squeeze(2)
        return (torch.logsumexp(h, dim=2) - true_class).mean(dim=1)

    def generation(self, x: torch.Tensor, y: torch.Tensor) -> None:
        order = self.losses(self.flat, x, y).argsort()
        parents = order[torch.randint(0, TRUNCATION, (POPULATION - ELITES,), generator=self.generator)]
        noise = torch.randn(POPULATION - ELITES, self.flat.shape[1], generator=self.generator)
        self.flat = torch.cat([self.flat[order[:ELITES]], self.flat[parents].add_(noise, alpha=SIGMA)])


def bare_population(learner: GeneticAlgorithm) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The learner's population laid out for ``BareGA``: per layer W^T (in, out) then b."""
    parts, layers = [], []
    for name, module in learner.model.named_children():
        if isinstance(module, torch.nn.Linear):
            params = learner.forward.flat.unflatten(learner.population.matrix)
            w, b = params[f"{name}.weight"], params[f"{name}.bias"]
            parts += [w.transpose(1, 2).flatten(1), b]
            layers.append((module.in_features, module.out_features))
    return torch.cat(parts, dim=1).contiguous(), layers


class ListIndividual(list):
    """DEAP's stock representation: a Python list of floats with a fitness."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(values)
        self.fitness = Fitness()


def stock_deap(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[list[ListIndividual], base.Toolbox]:
    """Population and toolbox for ``eaSimple`` with list individuals, evaluated one at a time."""
    forward = PopulationForward(model)

    def evaluate(ind: ListIndividual) -> tuple[float]:
        forward.flat.load(model, torch.tensor(ind))
        with torch.no_grad():
            return (-float(torch.nn.functional.cross_entropy(model(x), y)),)

    toolbox = base.Toolbox()
    toolbox.register("evaluate", evaluate)
    toolbox.register("mate", tools.cxTwoPoint)
    toolbox.register("mutate", tools.mutGaussian, mu=0.0, sigma=SIGMA, indpb=1.0)
    toolbox.register("select", tools.selTournament, tournsize=3)
    flat = forward.flat.flatten(model)
    population = [ListIndividual((flat + 0.05 * torch.randn(flat.shape)).tolist()) for _ in range(POPULATION)]
    return population, toolbox


def best_ms(fns: dict[str, tuple[Callable[[], None], int]], repeats: int) -> dict[str, float]:
    """name -> best over ``repeats`` blocks of the mean CPU ms (process time) per generation; blocks of the
    implementations alternate, so a burst of load from other processes hits them alike."""
    for fn, _ in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, (fn, generations) in fns.items():
            t0 = time.process_time()
            for _ in range(generations):
                fn()
            best[name] = min(best[name], (time.process_time() - t0) / generations * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--activation", choices=("tanh", "relu"), default="tanh")
    args = parser.parse_args()
    spec = ModelSpec(hidden=(64, 32), activation=args.activation)
    torch.set_num_threads(args.threads)
    data = Digits().load(Digits.Params())
    x, y = data.train.x[:BATCH], data.train.y[:BATCH]
    generator = torch.Generator().manual_seed(0)

    learner = GeneticAlgorithm(
        spec,
        data.info,
        GAParams(population=POPULATION, sigma=SIGMA, elites=ELITES, truncation=TRUNCATION, batch_size=BATCH),
        generator,
        torch.device("cpu"),
    )
    forward = PopulationForward(build_model(spec, data.info.input_shape, data.info.n_classes, generator))
    step = pure_torch_generation(forward, generator)
    pop = [learner.population.matrix.clone()]

    def pure() -> None:
        pop[0] = step(pop[0], x, y)

    flat, layers = bare_population(learner)
    bare = BareGA(flat, layers, args.activation, torch.Generator().manual_seed(1))
    mine = learner.forward.evaluate(learner.population.matrix, x, y, "loss")[1]
    if not torch.allclose(bare.losses(flat, x, y), mine, rtol=1e-5, atol=1e-6):
        raise SystemExit("the bare forward and the learner's forward disagree on the population's losses")

    model = build_model(spec, data.info.input_shape, data.info.n_classes, generator)
    population, toolbox = stock_deap(model, x, y)

    def stock() -> None:
        algorithms.eaSimple(population, toolbox, cxpb=0.0, mutpb=1.0, ngen=1, verbose=False)

    ms = best_ms(
        {
            "ga": (lambda: learner.train_step(x, y), args.generations),
            "bare": (lambda: bare.generation(x, y), args.generations),
            "pure": (pure, args.generations),
            "stock": (stock, max(2, args.generations // 10)),
        },
        args.repeats,
    )
    ga_ms, bare_ms, pure_ms, stock_ms = ms["ga"], ms["bare"], ms["pure"], ms["stock"]
    print(
        f"setting: population {POPULATION}, digits MLP 64-32-10 {args.activation}, {BATCH} samples/generation, "
        f"{args.threads} torch thread(s)"
    )
    print(f"ga (DEAP, tensor individuals, vectorized forward): {ga_ms:8.2f} ms/generation")
    print(f"bare GA ((P, in, out) weights, baddbmm, one randn): {bare_ms:8.2f} ms/generation")
    print(f"pure torch GA (no DEAP, the learner's forward):   {pure_ms:8.2f} ms/generation")
    print(f"DEAP stock eaSimple (list individuals, 1 at a time): {stock_ms:8.2f} ms/generation")
    print(f"ratio ga / bare:        {ga_ms / bare_ms:.2f}  (target <= 1.25)")
    print(f"ratio ga / pure torch:  {ga_ms / pure_ms:.2f}  (target <= 1.5)")
    print(f"ratio stock / ga:       {stock_ms / ga_ms:.1f}  (target >= 10)")


if __name__ == "__main__":
    main()
