"""Generation time of the ``ga`` learner against a pure-torch GA and DEAP's stock ``eaSimple``.

Setting (issue 4): population 64, digits, MLP 64-32-10 (tanh, or relu), 512 samples per generation,
Gaussian mutation (sigma .02) of every child, no crossover. Three implementations of one
generation on the same minibatch:

- ``ga``: this repo's learner (DEAP selection + ``varAnd``, tensor individuals, one
  vectorized forward for the population);
- ``pure torch``: the same generation with no DEAP at all (top-k truncation, index the
  parents, one ``randn`` for all children), using the same vectorized forward;
- ``DEAP stock``: ``algorithms.eaSimple`` with Python-list individuals, ``tools.mutGaussian``,
  ``tools.selTournament``, and one network evaluated at a time.

Prints ms per generation (best of ``--repeats`` timed blocks) and the two ratios the issue
asks for: ga / pure torch (target <= 1.5) and DEAP stock / ga (target >= 10).

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


def pure_torch_generation(forward: PopulationForward, generator: torch.Generator) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """One GA generation in plain torch: evaluate all, keep the elite, truncation + mutation."""
    def step(pop: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fitness = -cross_entropies(forward.logits(pop, x), y)
        order = fitness.argsort(descending=True)
        parents = order[torch.randint(0, TRUNCATION, (POPULATION - ELITES,), generator=generator)]
        children = pop[parents] + SIGMA * torch.randn(POPULATION - ELITES, pop.shape[1], generator=generator)
        return torch.cat([pop[order[:ELITES]], children])
    return step


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
    """name -> best over ``repeats`` blocks of the mean ms per generation; blocks of the
    implementations alternate, so a burst of load from other processes hits them alike."""
    for fn, _ in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, (fn, generations) in fns.items():
            t0 = time.perf_counter()
            for _ in range(generations):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / generations * 1e3)
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

    learner = GeneticAlgorithm(spec, data.info, GAParams(population=POPULATION, sigma=SIGMA, elites=ELITES,
                                                         truncation=TRUNCATION, batch_size=BATCH),
                               generator, torch.device("cpu"))
    forward = PopulationForward(build_model(spec, data.info.input_shape, data.info.n_classes, generator))
    step = pure_torch_generation(forward, generator)
    pop = [learner.population.matrix.clone()]

    def pure() -> None:
        pop[0] = step(pop[0], x, y)

    model = build_model(spec, data.info.input_shape, data.info.n_classes, generator)
    population, toolbox = stock_deap(model, x, y)

    def stock() -> None:
        algorithms.eaSimple(population, toolbox, cxpb=0.0, mutpb=1.0, ngen=1, verbose=False)

    ms = best_ms({"ga": (lambda: learner.train_step(x, y), args.generations),
                  "pure": (pure, args.generations),
                  "stock": (stock, max(2, args.generations // 10))}, args.repeats)
    ga_ms, pure_ms, stock_ms = ms["ga"], ms["pure"], ms["stock"]
    print(f"setting: population {POPULATION}, digits MLP 64-32-10 {args.activation}, {BATCH} samples/generation, "
          f"{args.threads} torch thread(s)")
    print(f"ga (DEAP, tensor individuals, vectorized forward): {ga_ms:8.2f} ms/generation")
    print(f"pure torch GA (same work, no DEAP):               {pure_ms:8.2f} ms/generation")
    print(f"DEAP stock eaSimple (list individuals, 1 at a time): {stock_ms:8.2f} ms/generation")
    print(f"ratio ga / pure torch:  {ga_ms / pure_ms:.2f}  (target <= 1.5)")
    print(f"ratio stock / ga:       {stock_ms / ga_ms:.1f}  (target >= 10)")


if __name__ == "__main__":
    main()
