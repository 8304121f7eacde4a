"""Evolutionary learners (ga, cmaes, es): vectorized evaluation, DEAP in charge, seeds, isolation, learning."""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deap import algorithms, cma, creator, tools

from bpbench.experiments.plan.config import build, to_plain
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.runner import run
from bpbench.learners.base import TaskInfo
from bpbench.learners.cmaes import CMAES, CMAESParams
from bpbench.learners.es import ESParams, EvolutionStrategies, centered_ranks
from bpbench.learners.ga import GAParams, GeneticAlgorithm
from bpbench.learners.models import ModelSpec, build_model, weight_layers
from bpbench.learners.population import PopulationForward, cross_entropies
from bpbench.tasks.digits import Digits

CPU = torch.device("cpu")
SMALL = ModelSpec(hidden=(16,), activation="tanh")
LINEAR = ModelSpec(hidden=())


@dataclasses.dataclass
class Small:
    """Digits pooled to 4x4 (16 inputs): a 170-weight linear model keeps CMA-ES's eigendecomposition cheap."""

    info: TaskInfo
    x: torch.Tensor
    y: torch.Tensor


@pytest.fixture(scope="module")
def small(digits) -> Small:
    return Small(
        dataclasses.replace(digits.info, input_shape=(1, 4, 4)),
        F.avg_pool2d(digits.train.x[:64], 2),
        digits.train.y[:64],
    )


def make(cls, data, params, model=SMALL, seed=0):
    return cls(model, data.info, params, torch.Generator().manual_seed(seed), CPU)


def weights(learner) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in learner.model.parameters()])


LEARNERS = [
    (GeneticAlgorithm, GAParams(population=16, batch_size=64, crossover=0.5), SMALL),
    (EvolutionStrategies, ESParams(population=16, batch_size=64), SMALL),
    (CMAES, CMAESParams(population=8, batch_size=64), ModelSpec(hidden=(), activation="tanh")),
]


@pytest.mark.parametrize(
    "spec, shape",
    [
        (ModelSpec(hidden=(16, 8), activation="tanh"), (1, 8, 8)),
        (ModelSpec(arch="cnn", channels=(3, 4), hidden=(8,)), (1, 8, 8)),
        (ModelSpec(arch="lenet"), (1, 28, 28)),
        (ModelSpec(hidden=(), activation="relu"), (20, 13)),
    ],
)
def test_vectorized_evaluation_equals_one_network_at_a_time(spec: ModelSpec, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    nets = [build_model(spec, shape, 10, gen) for _ in range(5)]
    forward = PopulationForward(nets[0])
    population = torch.stack([forward.flat.flatten(n) for n in nets])
    x, y = torch.randn(33, *shape, generator=gen), torch.randint(0, 10, (33,), generator=gen)
    logits = forward.logits(population, x)
    with torch.no_grad():
        one_by_one = torch.stack([n(x) for n in nets])
    torch.testing.assert_close(logits, one_by_one, rtol=1e-5, atol=1e-5)
    fitness, losses = forward.evaluate(population, x, y, "loss")
    expected = torch.stack([F.cross_entropy(logits, y) for logits in one_by_one])
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fitness, -expected)
    accuracy, _ = forward.evaluate(population, x, y, "accuracy")
    torch.testing.assert_close(accuracy, torch.stack([(logits.argmax(1) == y).float().mean() for logits in one_by_one]))
    torch.testing.assert_close(cross_entropies(logits, y), expected, rtol=1e-5, atol=1e-5)


def test_flat_weights_round_trip() -> None:
    net = build_model(SMALL, (1, 8, 8), 10, torch.Generator().manual_seed(0))
    forward = PopulationForward(net)
    flat = forward.flat.flatten(net)
    assert flat.shape == (64 * 16 + 16 + 16 * 10 + 10,)
    forward.flat.load(net, flat * 2)
    torch.testing.assert_close(forward.flat.flatten(net), flat * 2)
    signal = forward.flat.layer_signal(flat)
    assert {k: tuple(v.shape) for k, v in signal.items()} == {"fc1": (16, 64), "out": (10, 16)}


@pytest.mark.parametrize("cls, params, model", LEARNERS)
def test_same_seed_same_result_other_seed_differs(cls, params, model, small) -> None:
    x, y = small.x, small.y

    def trained(seed: int) -> tuple[torch.Tensor, list[float]]:
        learner = make(cls, small, params, model, seed)
        losses = [learner.train_step(x, y).loss for _ in range(4)]
        return weights(learner), losses

    (w1, l1), (w2, l2), (w3, _) = trained(0), trained(0), trained(1)
    assert torch.equal(w1, w2) and l1 == l2
    assert not torch.equal(w1, w3)


@pytest.mark.parametrize("cls, params, model", LEARNERS)
def test_runs_in_one_process_are_independent(cls, params, model, small) -> None:
    """A's result does not change when other evolutionary runs step in between, and no run
    touches the caller's global RNG streams (DEAP uses them) or DEAP's global ``creator``."""
    x, y = small.x, small.y
    alone = make(cls, small, params, model, seed=3)
    for _ in range(3):
        alone.train_step(x, y)
    creator_before = set(vars(creator))
    random.seed(7)
    np.random.seed(7)
    a = make(cls, small, params, model, seed=3)
    others = [make(c, small, p, m, seed=4) for c, p, m in LEARNERS]
    for _ in range(3):
        a.train_step(x, y)
        for other in others:
            other.train_step(x, y)
        random.random()  # the caller's own draws
        np.random.standard_normal()
    assert torch.equal(weights(a), weights(alone))
    assert set(vars(creator)) == creator_before
    ref_py, ref_np = random.Random(7), np.random.RandomState(7)
    for _ in range(3):
        ref_py.random()
        ref_np.standard_normal()
    assert random.random() == ref_py.random() and np.random.standard_normal() == ref_np.standard_normal()


START = {  # the weights each learner's next update starts from (its signal is about that point)
    GeneticAlgorithm: lambda learner: learner.population.matrix.mean(dim=0),
    EvolutionStrategies: lambda learner: learner.strategy.mean.detach(),
    CMAES: lambda learner: torch.from_numpy(learner.strategy.centroid).float(),
}


@pytest.mark.parametrize("cls, params, model", LEARNERS)
def test_true_gradient_is_taken_where_the_next_update_starts(cls, params, model, small) -> None:
    x, y = small.x, small.y
    learner = make(cls, small, params, model)
    learner.train_step(x, y)
    start = START[cls](learner).clone()
    reference = learner.true_gradient(x, y)
    net = build_model(model, small.info.input_shape, 10, torch.Generator())  # by hand: plain autograd there
    PopulationForward(net).flat.load(net, start)
    F.cross_entropy(net(x), y).backward()
    for name, module in weight_layers(net):
        torch.testing.assert_close(reference[name], module.weight.grad, rtol=1e-5, atol=1e-7)
    learner.train_step(x, y)
    if cls is not EvolutionStrategies:  # ga: the mean's step, cmaes: the centroid's step, from `start`
        moved = learner.forward.flat.layer_signal(start - START[cls](learner))
        for name, signal in learner.update_signal().items():
            torch.testing.assert_close(signal, moved[name], rtol=1e-5, atol=1e-6)


def counting(calls: dict[str, int], name: str, fn):
    def wrapped(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return fn(*args, **kwargs)

    return wrapped


def test_ga_selection_and_variation_go_through_deap(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}

    for name in ("selTournament", "selBest", "selRandom"):
        monkeypatch.setattr(tools, name, counting(calls, name, getattr(tools, name)))
    monkeypatch.setattr(algorithms, "varAnd", counting(calls, "varAnd", algorithms.varAnd))
    x, y = digits.train.x[:64], digits.train.y[:64]
    tournament = make(
        GeneticAlgorithm, digits, GAParams(population=8, batch_size=64, selection="tournament", crossover=1.0)
    )
    for op in ("mate", "mutate"):  # the toolbox's operators, as varAnd calls them
        original = getattr(tournament.toolbox, op)
        tournament.toolbox.register(op, counting(calls, op, original))
    for _ in range(2):
        tournament.train_step(x, y)
    assert calls["selTournament"] == 2 and calls["varAnd"] == 2
    assert calls["mutate"] == 2 * 7 and calls["mate"] == 2 * 3  # 7 children per generation (1 elite), 3 pairs
    truncation = make(GeneticAlgorithm, digits, GAParams(population=8, batch_size=64))
    before = dict(calls)
    truncation.train_step(x, y)
    assert calls["selRandom"] == before.get("selRandom", 0) + 1 and calls["selBest"] > before["selBest"]


def test_es_and_cmaes_run_deaps_generate_update_loop(small, monkeypatch: pytest.MonkeyPatch) -> None:
    counted = {"loop": 0, "cma_update": 0}
    loop, cma_update = algorithms.eaGenerateUpdate, cma.Strategy.update

    def spy_loop(*args, **kwargs):
        counted["loop"] += 1
        return loop(*args, **kwargs)

    def spy_update(self, population):
        counted["cma_update"] += 1
        assert len(population) == 8 and all(ind.fitness.valid for ind in population)
        return cma_update(self, population)

    monkeypatch.setattr(algorithms, "eaGenerateUpdate", spy_loop)
    monkeypatch.setattr(cma.Strategy, "update", spy_update)
    x, y = small.x, small.y
    es = make(EvolutionStrategies, small, ESParams(population=8, batch_size=64))
    cmaes = make(CMAES, small, CMAESParams(population=8, batch_size=64), LINEAR)
    for _ in range(2):
        es.train_step(x, y)
        cmaes.train_step(x, y)
    assert counted == {"loop": 4, "cma_update": 2}


def test_es_update_is_minus_its_signal_and_ranks_are_centered(digits) -> None:
    assert centered_ranks(torch.tensor([3.0, -1.0, 10.0])).tolist() == [0.0, -0.5, 0.5]
    es = make(EvolutionStrategies, digits, ESParams(population=16, batch_size=64, lr=0.01))
    before = weights(es)
    es.train_step(digits.train.x[:64], digits.train.y[:64])
    step = es.forward.flat.layer_signal(weights(es) - before)
    for layer, signal in es.update_signal().items():
        # Adam's first step is -lr * sign(g) per coordinate: along minus the estimate
        assert F.cosine_similarity(step[layer].flatten(), -signal.flatten(), dim=0) > 0.5, layer


def test_cmaes_refuses_large_models_with_a_clear_message(digits) -> None:
    with pytest.raises(ValueError, match=r"cmaes: the model has 2410 parameters .* at most 1000"):
        make(CMAES, digits, CMAESParams(), ModelSpec(hidden=(32,)))
    assert make(CMAES, digits, CMAESParams(), LINEAR).forward.flat.size == 650  # accepted


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: ESParams(population=7), "population = 7: must be an even number"),
        (lambda: GAParams(elites=64), r"elites = 64: allowed is 0 <= elites < population \(64\)"),
        (lambda: GAParams(selection="roulette"), "selection = 'roulette'"),
        (lambda: GAParams(fitness="f1"), "fitness = 'f1'"),
        (lambda: CMAESParams(population=2), "population = 2: must be >= 4"),
    ],
)
def test_bad_params_name_the_value(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def test_population_learners_refuse_batchnorm(digits) -> None:
    with pytest.raises(ValueError, match="batchnorm"):
        make(EvolutionStrategies, digits, ESParams(), ModelSpec(hidden=(8,), batchnorm=True))


def _spec(learner: str, params: dict, model: dict, epochs: int, seed: int) -> RunSpec:
    registry = learner_registry()
    return RunSpec(
        learner=learner,
        label=learner,
        params=to_plain(build(registry.get(learner).Params, params, learner)),
        task="digits",
        task_label="digits",
        task_params={},
        model=model,
        budget={"epochs": epochs},
        schedule={"eval_every": epochs, "health_every": 5},
        seed_index=seed,
        study_seed=0,
    )


@pytest.mark.parametrize(
    "learner, params, model, epochs, floor",
    [
        ("es", {"population": 64, "batch_size": 256}, {"hidden": [32], "activation": "relu"}, 8, 0.75),
        ("ga", {"population": 32, "batch_size": 256}, {"hidden": []}, 40, 0.75),
        ("cmaes", {"population": 32, "batch_size": 256}, {"hidden": []}, 3, 0.5),
    ],
)
def test_learns_digits_through_the_runner_with_counted_compute(
    learner, params, model, epochs, floor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count every single-sample forward the population forward really makes (P x B per call;
    # predict and the true gradient go through the plain model, not through it), per learner:
    # the runner's instruments step twin learners (one generation each, off the clock), so the
    # run's own learner is the one that ran all the others. Keep each sampled step's true
    # gradient and update signal to recompute the alignment by hand.
    by_learner: dict[int, int] = {}
    logits = PopulationForward.logits

    def counting_logits(self, population, x):
        by_learner[id(self)] = by_learner.get(id(self), 0) + population.shape[0] * x.shape[0]
        return logits(self, population, x)

    monkeypatch.setattr(PopulationForward, "logits", counting_logits)
    cls = learner_registry().get(learner)
    pairs: list[list[dict]] = []
    true_gradient, update_signal = cls.true_gradient, cls.update_signal

    def keep_reference(self, x, y):
        pairs.append([true_gradient(self, x, y)])
        return pairs[-1][0]

    def keep_signal(self):
        signal = update_signal(self)
        if pairs and len(pairs[-1]) == 1:
            pairs[-1].append(signal)
        return signal

    monkeypatch.setattr(cls, "true_gradient", keep_reference)
    monkeypatch.setattr(cls, "update_signal", keep_signal)

    result = run(_spec(learner, params, model, epochs, 0), learner_registry(), task_registry(), CPU)
    summary, rows = result.summary, result.rows
    assert summary["test_accuracy"] > floor  # chance is 0.1
    forward = [r["value"] for r in rows if r["metric"] == "forward_samples"][-1]
    counted = {"forward": max(by_learner.values())}
    assert forward == counted["forward"] > 0  # what the learner reported = what it ran
    twins = sorted(v for k, v in by_learner.items() if v != counted["forward"])
    batches = (256, len(Digits().load(Digits.Params()).train) % 256)
    assert len(twins) == 3 and set(twins) <= {params["population"] * b for b in batches}  # one generation each
    samples = [r["value"] for r in rows if r["metric"] == "train_samples"][-1]
    widths = [64, *model["hidden"], 10]
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    assert summary["train_flops"] >= 2 * macs * forward and forward == params["population"] * samples
    recorded = [r for r in rows if r["metric"] == "grad_alignment"]
    assert recorded and len({r["step"] for r in recorded}) == len(pairs)
    by_step = sorted({r["step"] for r in recorded})
    for step, (reference, signal) in zip(by_step, pairs):
        for r in (r for r in recorded if r["step"] == step):
            a, b = signal[r["layer"]].double().flatten(), reference[r["layer"]].double().flatten()
            by_hand = float(torch.dot(a, b) / torch.sqrt(torch.dot(a, a) * torch.dot(b, b)))
            assert r["value"] == pytest.approx(by_hand, abs=1e-6), (step, r["layer"])
    if learner == "es":  # the ES estimate points along the true gradient on average
        assert statistics.mean(r["value"] for r in recorded) > 0.02


def test_study_learner_tasks_key_restricts_tasks() -> None:
    from bpbench.experiments.plan.config import ConfigError
    from bpbench.experiments.plan.study import expand

    raw = {"tasks": ["digits", "fsdd"], "learners": {"es": {}, "cmaes": {"tasks": ["digits"], "model": {"hidden": []}}}}
    runs = expand("t", raw, learner_registry(), task_registry()).runs
    assert sorted((r.label, r.task_label) for r in runs) == [("cmaes", "digits"), ("es", "digits"), ("es", "fsdd")]
    raw["learners"]["cmaes"]["tasks"] = ["digitz"]
    with pytest.raises(ConfigError, match=r"learners.cmaes.tasks = \['digitz'\]: expected a non-empty list"):
        expand("t", raw, learner_registry(), task_registry())


def test_quick_study_lists_the_evolution_learners() -> None:
    from bpbench.experiments.plan.study import load_study

    runs = load_study("quick", [], learner_registry(), task_registry()).runs
    by_label = {label: sorted({r.task_label for r in runs if r.label == label}) for label in ("es", "ga", "cmaes")}
    assert by_label == {"es": ["digits", "fsdd", "mnist5k"], "ga": ["digits", "fsdd", "mnist5k"], "cmaes": ["digits"]}


def deap_stock_generation(learner: GeneticAlgorithm, x: torch.Tensor, y: torch.Tensor) -> None:
    """ga's generation as it was before issue 14: three sorts, DEAP clones of every elite and
    parent (``population.clone``: a fresh tensor each), then the clones stacked."""
    from bpbench.learners.population import Population, clone

    pop, p = learner.population, learner.params
    learner.toolbox.register("evaluate", learner._score, x, y)
    learner.toolbox.register("clone", clone)
    with learner.rng:
        for ind, fit in zip(pop, learner.toolbox.map(learner.toolbox.evaluate, pop)):
            ind.fitness.values = fit
        best = tools.selBest(pop, 1)[0]
        elites = [learner.toolbox.clone(ind) for ind in tools.selBest(pop, p.elites)]
        parents = learner.toolbox.select(pop, len(pop) - p.elites)
        children = algorithms.varAnd(parents, learner.toolbox, p.crossover, 1.0)
    learner.forward.flat.load(learner.model, best)
    learner.population = Population(torch.stack(elites + children))


@pytest.mark.parametrize(
    "params",
    [
        GAParams(population=12, truncation=4, elites=2, batch_size=64),
        GAParams(population=12, selection="tournament", crossover=0.5, elites=1, batch_size=64),
    ],
)
def test_ga_generation_equals_deaps_stock_clone_and_stack(params, digits) -> None:
    """The in-place next generation (Nursery), the single ranking sort and the Python-only RNG swap
    (issue 14) give the very populations DEAP's stock clone-and-stack gave, generation by generation."""
    fast, stock = make(GeneticAlgorithm, digits, params), make(GeneticAlgorithm, digits, params)
    for g in range(6):
        x, y = digits.train.x[64 * g : 64 * (g + 1)], digits.train.y[64 * g : 64 * (g + 1)]
        fast.train_step(x, y)
        deap_stock_generation(stock, x, y)
        assert torch.equal(fast.population.matrix, stock.population.matrix)
        assert torch.equal(weights(fast), weights(stock))
    assert not torch.equal(fast.population.matrix[0], fast.population.matrix[-1])
