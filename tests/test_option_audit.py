"""Option audit: every field of every registered learner's ``Params`` has its documented effect.

For each learner found through the ``bpbench.learners`` entry points, ``AUDIT[name][field]`` is
either a check, which sets the field to a non-default value and compares the first updates (same
seed, same batch) with the option's formula at that value *and* shows the formula at the default
value does not fit (so the check can fail: scale as well as direction), or a string saying why the
option does not affect the update. ``test_every_option_of_every_learner_is_audited`` fails when a
learner (a built-in, or one added later) has a field the audit does not cover.

The optimizer options shared by the gradient-based rules (``optimizer``, ``lr``, ``momentum``,
``weight_decay``) are checked against SGD's and Adam's formulas written out in
``option_audit_tools`` from the gradients each step handed to the optimizer.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from bpbench.experiments.front.conformance import check_learner, check_learns, check_options, options_report
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.learners.backprop import Backprop, BackpropLossParams
from bpbench.learners.base import Learner
from bpbench.learners.cmaes import array_individual
from bpbench.learners.encoders import unit_scale
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.learners.params import param
from bpbench.learners.spiking import Trace
from bpbench.tasks.base import Split, TaskData
from fidelity_tools import all_gradients
from option_audit_tools import DEEP, INFO, LINEAR, MLP, StepLog, batch, make, matches_formula, record, with_

Check = Callable[[type[Learner]], None]
RUNNER = (
    "batch_size: the minibatch size the runner draws for each train_step (the rule updates on whatever batch it gets)"
)
X, Y = batch()


def named(learner: Learner, log: StepLog, step: int, what: str = "grads") -> dict[str, Tensor | None]:
    """The logged tensors of one step by parameter name (the optimizer holds model.parameters())."""
    names = [n for n, _ in learner.model.named_parameters()]
    return dict(zip(names, getattr(log, what)[step]))


def close(a: Tensor | None, b: Tensor, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    return a is not None and torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)


def fits_only(value: Callable[[Any], bool], chosen: Any, default: Any) -> None:
    """The effect fits the formula at the chosen value and not at the default (the check has teeth)."""
    assert value(chosen), f"the update does not follow the formula at the chosen value {chosen!r}"
    assert not value(default), f"the formula at the default {default!r} fits too: the check cannot tell them apart"


# ---- the optimizer options of every BackpropParams subclass ------------------------------------

OPTIMIZER_VALUES = {  # each setting is checked; weight decay and lr under both optimizers
    "optimizer": [{"optimizer": "sgd"}],
    "lr": [{"lr": 0.05}, {"optimizer": "sgd", "momentum": 0.0, "lr": 0.05}],
    "momentum": [{"optimizer": "sgd", "momentum": 0.5}],
    "weight_decay": [{"weight_decay": 0.1}, {"optimizer": "sgd", "weight_decay": 0.1}],
}


def optimizer_check(option: str) -> Check:
    """Three steps on one batch follow SGD's / Adam's formula with the chosen option, not the default."""

    def check(cls: type[Learner]) -> None:
        for setting in OPTIMIZER_VALUES[option]:
            check_setting(cls, setting)

    def check_setting(cls: type[Learner], setting: dict[str, Any]) -> None:
        default, chosen = cls.Params(), dataclasses.replace(cls.Params(), **setting)
        spec = DEEP if cls.__name__ in {"DifferenceTargetPropagation"} else MLP
        learner = make(cls, chosen, spec)
        log = record(learner.optimizer)
        for _ in range(3):
            learner.train_step(X, Y)
        assert len(log.after) == 3, "the rule did not step its optimizer once per train_step"

        def fits(value: Any) -> bool:
            p = dataclasses.replace(chosen, **{option: value})
            return matches_formula(log, p.optimizer, p.lr, p.momentum, p.weight_decay)

        fits_only(fits, getattr(chosen, option), "adam" if option == "optimizer" else getattr(default, option))

    return check


OPTIMIZER = {name: optimizer_check(name) for name in OPTIMIZER_VALUES}


def runner_field(cls: type[Learner]) -> None:
    """batch_size: not an update option; the learner reports it to the runner as it was set."""
    learner = make(cls, with_(cls, batch_size=7), LINEAR if cls.__name__ == "CMAES" else MLP)
    assert learner.batch_size == 7


# ---- backprop ----------------------------------------------------------------------------------


def backprop_loss(cls: type[Learner]) -> None:
    """loss = "mse": the first step's gradient is that of ½‖z − onehot(y)‖² (batch mean), not CE's."""
    learner = make(cls, with_(cls, loss="mse"))
    target = F.one_hot(Y, 4).float()
    mse = all_gradients(learner.model, lambda z: 0.5 * (z - target).square().sum(1).mean(), X)
    ce = all_gradients(learner.model, lambda z: F.cross_entropy(z, Y), X)
    log = record(learner.optimizer)
    learner.train_step(X, Y)
    got = named(learner, log, 0)
    fits_only(lambda ref: all(close(got[k], v) for k, v in ref.items()), mse, ce)


# ---- the feedback family -----------------------------------------------------------------------


def routed_first_layer(weights: dict[str, Tensor | None], b: Tensor) -> Tensor:
    """fc1's weight gradient in a one-hidden-layer MLP when the output error reaches it through ``b``
    (n_classes, 8): δ₁ = ((softmax(z) − onehot(y))/B · b) ⊙ relu′(s₁), ∂W₁ = δ₁ᵀ x (fa, dfa, uSF)."""
    w1, b1, wo, bo = (weights[k] for k in ("fc1.weight", "fc1.bias", "out.weight", "out.bias"))
    h0 = X.flatten(1)
    s1 = F.linear(h0, w1, b1)
    z = F.linear(torch.relu(s1), wo, bo)
    e = (z.softmax(1) - F.one_hot(Y, 4).float()) / len(Y)
    return ((e @ b) * (s1 > 0).float()).t() @ h0


def feedback_scale(cls: type[Learner]) -> None:
    """feedback_scale: B is drawn uniform in ±scale/√fan_in (init), exactly scale × the unit draw,
    and fc1's update is δ_out through that B: it scales by the same factor, the output layer's not."""
    unit, scaled = make(cls, with_(cls, feedback_scale=1.0)), make(cls, with_(cls, feedback_scale=3.0))
    for name, b in scaled.feedback.items():
        bound = 3.0 / math.sqrt(math.prod(b.shape[1:]))
        assert torch.allclose(b, 3.0 * unit.feedback[name]), "B is not scale x the unit-scale draw"
        assert float(b.abs().max()) <= bound and float(b.abs().max()) > 0.8 * bound, "B's range is not ±scale/√fan_in"
    logs = [record(unit.optimizer), record(scaled.optimizer)]
    unit.train_step(X, Y)
    scaled.train_step(X, Y)
    g1, g3 = named(unit, logs[0], 0), named(scaled, logs[1], 0)
    assert close(g3["out.weight"], g1["out.weight"]), "the output layer's update depends on the feedback scale"
    before = named(scaled, logs[1], 0, "before")
    fits_only(lambda s: close(g3["fc1.weight"], routed_first_layer(before, s * unit.feedback["out"])), 3.0, 1.0)


def sign_refresh(cls: type[Learner]) -> None:
    """Sign-concordant feedback is refreshed every step: fc1's update at each step is δ_out through
    sign(W_out)·√(2/(fan_in + fan_out)) of that step's W_out (big SGD steps flip signs between them)."""
    learner = make(cls, with_(cls, optimizer="sgd", lr=3.0, momentum=0.0))
    log = record(learner.optimizer)
    for _ in range(3):
        learner.train_step(X, Y)
    scale = math.sqrt(2.0 / (8 + 4))
    first = named(learner, log, 0, "before")["out.weight"]
    flipped = False
    for step in range(3):
        before, got = named(learner, log, step, "before"), named(learner, log, step)
        current = before["out.weight"].sign() * scale
        stale = first.sign() * scale
        assert close(got["fc1.weight"], routed_first_layer(before, current)), f"step {step}: not sign(W) of this step"
        flipped = flipped or not close(got["fc1.weight"], routed_first_layer(before, stale))
    assert flipped, "no sign of W_out flipped: the refresh was not exercised"


# ---- evolution ----------------------------------------------------------------------------------


def fitness_of(model: torch.nn.Module, flat: Tensor, kind: str) -> float:
    """Minus the cross-entropy (loss) or the accuracy of the weights ``flat`` on the audit batch."""
    shapes = [(n, p.shape, p.numel()) for n, p in model.named_parameters()]
    params, at = {}, 0
    for n, shape, size in shapes:
        params[n] = flat[at : at + size].reshape(shape)
        at += size
    logits = torch.func.functional_call(model, params, (X,))
    return float((logits.argmax(1) == Y).float().mean()) if kind == "accuracy" else -float(F.cross_entropy(logits, Y))


def es_estimate(learner: Any, mean: Tensor, eps: Tensor, shaped: bool = True, **changes: Any) -> Tensor:
    """Salimans et al.'s antithetic estimate of the loss gradient with centered-rank shaping:
    individuals mean ± σε, fitness ranks scaled to [−.5, .5], g = −Σᵢ(r⁺ᵢ − r⁻ᵢ)εᵢ/(Pσ) + λ·mean."""
    p = dataclasses.replace(learner.params, **changes)
    pop = torch.cat([mean + p.sigma * eps, mean - p.sigma * eps])
    fit = torch.tensor([fitness_of(learner.model, row, p.fitness) for row in pop])
    ranks = torch.empty_like(fit)
    ranks[fit.argsort()] = torch.arange(len(fit), dtype=fit.dtype)
    ranks = ranks / (len(fit) - 1) - 0.5 if shaped else fit
    half = len(eps)
    return -((ranks[:half] - ranks[half:]) @ eps) / (len(pop) * p.sigma) + p.weight_decay * mean


def es_step(cls: type[Learner], **changes: Any) -> tuple[Any, Tensor, Tensor]:
    """(learner after one generation, its mean before, the directions ε it drew)."""
    learner: Any = make(cls, with_(cls, **{"population": 8, **changes}), LINEAR)
    mean = learner.strategy.mean.detach().clone()
    out = learner.train_step(X, Y)
    assert out.forward_samples == learner.params.population * len(X)
    return learner, mean, learner.strategy._eps


def es_option(option: str, value: Any) -> Check:
    """The ES estimate follows the antithetic rank-shaped formula at the chosen value, not the default."""

    def check(cls: type[Learner]) -> None:
        learner, mean, eps = es_step(cls, **{option: value})
        with torch.no_grad():
            learner.forward.flat.load(learner.model, mean)  # the formula's forward at the step's start
        default = getattr(cls.Params(), option)
        fits_only(
            lambda v: close(learner.strategy.gradient, es_estimate(learner, mean, eps, **{option: v})), value, default
        )

    return check


def es_population(cls: type[Learner]) -> None:
    """population = 6: three directions ε, six individuals (antithetic pairs) scored, and the
    estimate is the formula over those six."""
    learner, mean, eps = es_step(cls, population=6)
    with torch.no_grad():
        learner.forward.flat.load(learner.model, mean)
    ref = es_estimate(learner, mean, eps)
    fits_only(lambda n: 2 * len(eps) == n and close(learner.strategy.gradient, ref), 6, cls.Params().population)


def es_shaping(cls: type[Learner]) -> None:
    """Antithetic pairs and rank shaping (not options: the rule's definition): the estimate is the
    centered-rank one over pairs mean ± σε, not the one from raw fitness values."""
    learner, mean, eps = es_step(cls)
    with torch.no_grad():
        learner.forward.flat.load(learner.model, mean)
    fits_only(lambda shaped: close(learner.strategy.gradient, es_estimate(learner, mean, eps, shaped)), True, False)


def es_weight_decay(cls: type[Learner]) -> None:
    """weight_decay λ: the estimate is the undecayed one + λ·mean (sign and size), same draws."""
    plain, mean, eps = es_step(cls, weight_decay=0.0)
    decayed, _, eps2 = es_step(cls, weight_decay=0.3)
    assert torch.equal(eps, eps2)
    fits_only(lambda lam: close(decayed.strategy.gradient - plain.strategy.gradient, lam * mean), 0.3, 0.0)


def es_lr(cls: type[Learner]) -> None:
    """lr: the mean takes Adam's first step along the estimate, −lr·g/(|g| + 1e-8)."""
    learner, mean, _ = es_step(cls, lr=0.1)
    g = learner.strategy.gradient
    moved = learner.strategy.mean.detach() - mean
    fits_only(lambda lr: close(moved, -lr * g / (g.abs() + 1e-8), atol=1e-5), 0.1, cls.Params().lr)


def fitness_kind(cls: type[Learner]) -> None:
    """fitness = "accuracy": individuals are scored by their batch accuracy, not minus their loss."""
    learner: Any = make(cls, with_(cls, fitness="accuracy"), LINEAR)
    rows = torch.stack([learner.forward.flat.flatten(learner.model) + 0.3 * torch.randn(68) for _ in range(4)])
    scored = learner._score(X, Y, rows)

    def fits(kind: str) -> bool:
        return close(scored, torch.tensor([fitness_of(learner.model, r, kind) for r in rows]), atol=1e-5)

    fits_only(fits, "accuracy", "loss")


def ga_generation(cls: type[Learner], **changes: Any) -> tuple[Any, Tensor, Tensor, Tensor]:
    """(learner, old population (P, D), its fitness, new population) of one generation."""
    learner: Any = make(cls, with_(cls, **{"population": 10, **changes}), LINEAR)
    old = learner.population.matrix.clone()
    fit = torch.tensor([fitness_of(learner.model, row, "loss") for row in old])
    out = learner.train_step(X, Y)
    assert out.forward_samples == len(old) * len(X)
    return learner, old, fit, learner.population.matrix


def nearest(children: Tensor, old: Tensor) -> tuple[Tensor, Tensor]:
    """(index of each child's nearest old row, child − that row)."""
    idx = torch.cdist(children, old).argmin(1)
    return idx, children - old[idx]


def ga_elites(cls: type[Learner]) -> None:
    """elites = 3: the next generation starts with the 3 fittest, unchanged, best first."""
    _, old, fit, new = ga_generation(cls, elites=3)
    top = old[fit.argsort(descending=True)]
    fits_only(lambda k: torch.equal(new[:k], top[:k]) and not any(torch.equal(new[k], r) for r in old), 3, 1)


def ga_sigma(cls: type[Learner]) -> None:
    """sigma: every child is its parent + N(0, σ²) on each weight (std within 10%)."""
    _, old, _, new = ga_generation(cls, sigma=0.05)
    _, step = nearest(new[1:], old)
    fits_only(lambda s: abs(float(step.std()) / s - 1) < 0.1, 0.05, 0.02)


def parent_ranks(old: Tensor, fit: Tensor, new: Tensor, elites: int = 1) -> Tensor:
    """Fitness rank (0 = best) of each child's parent."""
    idx, _ = nearest(new[elites:], old)
    order = fit.argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank[idx]


def ga_truncation(cls: type[Learner]) -> None:
    """truncation = 3: every parent is among the 3 fittest (and more than one of them is used)."""
    _, old, fit, new = ga_generation(cls, truncation=3)
    ranks = parent_ranks(old, fit, new)
    fits_only(lambda k: int(ranks.max()) < k and len(set(ranks.tolist())) > 1, 3, 1)


def ga_selection(cls: type[Learner]) -> None:
    """selection = "tournament" (size 100 of 10): every parent is the best; truncation picks among 8."""
    _, old, fit, new = ga_generation(cls, selection="tournament", tournament_size=100)
    ranks = parent_ranks(old, fit, new)
    _, old2, fit2, new2 = ga_generation(cls, tournament_size=100)  # truncation, default truncation 8
    ranks2 = parent_ranks(old2, fit2, new2)
    fits_only(lambda r: int(r.max()) == 0, ranks, ranks2)


def ga_tournament_size(cls: type[Learner]) -> None:
    """tournament_size = 1: a tournament of one is a uniform draw, so parents span the population
    (some from its worse half); the default 3 favours the fitter ones."""
    _, old, fit, new = ga_generation(cls, selection="tournament", tournament_size=1)
    ranks = parent_ranks(old, fit, new).float()
    _, old3, fit3, new3 = ga_generation(cls, selection="tournament", tournament_size=30)
    ranks30 = parent_ranks(old3, fit3, new3).float()
    assert int(ranks.max()) >= 5, "a size-1 tournament never picked from the worse half"
    assert float(ranks.mean()) > float(ranks30.mean()), "a larger tournament does not pick fitter parents"


def ga_crossover(cls: type[Learner]) -> None:
    """crossover = 1 (σ tiny): children mix two parents weight by weight (each weight is one of the
    two parents'); with crossover 0 every child is near a single parent."""

    def mixed(new: Tensor, old: Tensor, sigma: float) -> int:
        count = 0
        for child in new[1:]:
            match = (child[None] - old).abs() < 20 * sigma
            a = int(match.sum(1).argmax())
            b = int(match[:, ~match[a]].sum(1).argmax()) if (~match[a]).any() else a
            assert bool((match[a] | match[b]).all()), "a child weight comes from no parent"
            count += a != b
        return count

    _, old, _, new = ga_generation(cls, crossover=1.0, sigma=1e-5)
    _, old0, _, new0 = ga_generation(cls, crossover=0.0, sigma=1e-5)
    assert mixed(new, old, 1e-5) >= 3 and mixed(new0, old0, 1e-5) == 0


def ga_population(cls: type[Learner]) -> None:
    """population = 10: ten individuals, each evaluated once per generation."""
    _, old, _, new = ga_generation(cls, population=10)
    assert old.shape[0] == new.shape[0] == 10


def cmaes_generated(cls: type[Learner], **changes: Any) -> tuple[Any, Tensor, Tensor]:
    """(learner, centroid before, the individuals it sampled) for one generation."""
    learner: Any = make(cls, with_(cls, **changes), LINEAR)
    sampled: list[Any] = []

    def generate(ind_init: Any) -> Any:
        pop = learner.strategy.generate(ind_init)
        sampled.extend(pop)
        return pop

    learner.toolbox.register("generate", generate, array_individual)
    centroid = torch.from_numpy(learner.strategy.centroid.copy())
    out = learner.train_step(X, Y)
    assert out.forward_samples == len(sampled) * len(X)
    return learner, centroid, torch.from_numpy(__import__("numpy").stack(sampled))


def cmaes_population(cls: type[Learner]) -> None:
    """population = 6: λ = 6 individuals a generation; 0 (default) is DEAP's 4 + 3 ln D."""
    _, _, pop = cmaes_generated(cls, population=6)
    _, _, pop0 = cmaes_generated(cls)
    assert len(pop0) == int(4 + 3 * math.log(68))
    fits_only(lambda n: len(pop) == n, 6, len(pop0))


def cmaes_sigma(cls: type[Learner]) -> None:
    """sigma: the first generation's samples are centroid + σ·z (C = I), z the same draws: 5x σ, 5x spread."""
    _, c, pop = cmaes_generated(cls, sigma=0.5)
    _, c0, pop0 = cmaes_generated(cls)
    assert torch.equal(c, c0)
    fits_only(lambda ratio: close(pop - c, ratio * (pop0 - c0)), 5.0, 1.0)


# ---- spiking -----------------------------------------------------------------------------------

LOUD = 4 * X  # strong enough input that hidden neurons fire (their reset is then exercised)


def simulate(learner: Any, x: Tensor = LOUD) -> tuple[Tensor, Trace]:
    trace = Trace()
    with torch.no_grad():
        scores = learner.net(learner.train_input(x), trace)
    return scores, trace


def lif_fits(learner: Any, trace: Trace, beta: float, threshold: float) -> bool:
    """fc1's neurons follow U[t] = βU[t−1] + I − S[t−1]·θ, S[t] = [U[t] > θ], I = fc1(x) (direct input)."""
    layer = learner.model.fc1
    current = F.linear(trace.inputs["fc1"], layer.weight, layer.bias)
    mem, spk = trace.membranes["fc1"], trace.spikes["fc1"]
    assert spk.sum() > 0, "no hidden spike: the audit input is too weak to test firing and reset"
    u, s = torch.zeros_like(current), torch.zeros_like(current)
    for t in range(mem.shape[0]):
        u = beta * u + current - s * threshold
        s = (u > threshold).float()
        if not (close(mem[t], u, atol=1e-5) and torch.equal(spk[t], s)):
            return False
    return True


def spiking_neuron(option: str, value: Any) -> Check:
    """beta / threshold: the hidden membranes and spikes follow the LIF update at the chosen value
    (threshold both where a neuron fires and in the subtractive reset)."""

    def check(cls: type[Learner]) -> None:
        learner = make(cls, with_(cls, **{option: value}))
        _, trace = simulate(learner)
        p = learner.params
        at = {"beta": p.beta, "threshold": p.threshold}
        fits_only(lambda v: lif_fits(learner, trace, **{**at, option: v}), value, getattr(cls.Params(), option))

    return check


def learn_beta(cls: type[Learner]) -> None:
    """learn_beta: β of every layer is trained (an Adam step of lr on its first update); snn_dfa
    has no rule for β and refuses the option."""
    if cls.__name__ == "SpikingDFA":
        with pytest.raises(ValueError, match="learn_beta"):
            with_(cls, learn_beta=True)
        return
    learner: Any = make(cls, with_(cls, learn_beta=True))
    before = [float(n.beta.detach()) for _, n in learner.net.neurons]
    learner.train_step(LOUD, Y)
    moved = [abs(float(n.beta.detach()) - b) for (_, n), b in zip(learner.net.neurons, before)]
    fits_only(lambda lr: all(abs(m - lr) < 0.1 * lr for m in moved), learner.params.lr, 0.0)


SURROGATE_SLOPES = {
    "fast_sigmoid": lambda v, k: 1 / (k * v.abs() + 1) ** 2,
    "atan": lambda v, a: a / 2 / (1 + (math.pi / 2 * a * v) ** 2),
    "sigmoid": lambda v, k: k * torch.exp(-k * v) / (torch.exp(-k * v) + 1) ** 2,
}
SURROGATE_DEFAULT = {"fast_sigmoid": 25.0, "atan": 2.0, "sigmoid": 25.0}


def surrogate_fits(learner: Any, kind: str, slope: float) -> bool:
    """Every neuron's spike derivative is the surrogate's formula at that slope."""
    v = torch.linspace(-0.5, 0.5, 11, requires_grad=True)
    for _, neuron in learner.net.neurons:
        (grad,) = torch.autograd.grad(neuron.spike_grad(v).sum(), v)
        if not close(grad, SURROGATE_SLOPES[kind](v.detach(), slope)):
            return False
    return True


def surrogate(cls: type[Learner]) -> None:
    """surrogate = "atan": the spike derivative is atan's α/2 / (1 + (π/2·α·v)²), α = 2."""
    learner = make(cls, with_(cls, surrogate="atan"))
    fits_only(lambda kind: surrogate_fits(learner, kind, SURROGATE_DEFAULT[kind]), "atan", "fast_sigmoid")


def surrogate_slope(cls: type[Learner]) -> None:
    """surrogate_slope = 5: fast sigmoid's derivative 1/(5|v| + 1)², not snntorch's default 25."""
    learner = make(cls, with_(cls, surrogate_slope=5.0))
    fits_only(lambda k: surrogate_fits(learner, "fast_sigmoid", k), 5.0, 25.0)


def num_steps(cls: type[Learner]) -> None:
    """num_steps = 4: four time steps simulated; the membrane readout is their mean."""
    learner = make(cls, with_(cls, num_steps=4))
    scores, trace = simulate(learner)
    fits_only(lambda t: trace.membranes["fc1"].shape[0] == t, 4, 10)
    assert close(scores, trace.membranes["out"].mean(0), atol=1e-5)


def readout(cls: type[Learner]) -> None:
    """readout = "spikes": scores are output spike counts; "membrane" (default): mean output membrane."""
    learner = make(cls, with_(cls, readout="spikes"))
    scores, trace = simulate(learner)
    reads = {"spikes": trace.spikes["out"].sum(0), "membrane": trace.membranes["out"].mean(0)}
    fits_only(lambda kind: close(scores, reads[kind], atol=1e-5), "spikes", "membrane")


def encoding(cls: type[Learner]) -> None:
    """encoding: direct = the image as a constant current; rate = Bernoulli spikes at the per-sample
    min-max intensity; latency = at most one spike per pixel, brighter pixels earlier."""
    p = unit_scale(X).expand(10, *X.shape)
    direct = make(cls, cls.Params()).train_input(X)
    assert direct.constant and torch.equal(direct.x, X)
    rate = make(cls, with_(cls, encoding="rate")).train_input(X)
    assert not rate.constant and set(rate.x.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(rate.x.mean() - p.mean())) < 0.02
    assert float(torch.corrcoef(torch.stack([rate.x.mean(0).flatten(), p[0].flatten()]))[0, 1]) > 0.8
    latency = make(cls, with_(cls, encoding="latency")).train_input(X)
    assert not latency.constant and float(latency.x.sum(0).max()) <= 1.0
    fired = latency.x.sum(0).flatten() > 0
    times = latency.x.argmax(0).flatten()[fired].float()
    assert float(torch.corrcoef(torch.stack([times, p[0].flatten()[fired]]))[0, 1]) < -0.9


SPIKING: dict[str, Check | str] = {
    **OPTIMIZER,
    "batch_size": RUNNER,
    "num_steps": num_steps,
    "beta": spiking_neuron("beta", 0.5),
    "learn_beta": learn_beta,
    "threshold": spiking_neuron("threshold", 0.5),
    "surrogate": surrogate,
    "surrogate_slope": surrogate_slope,
    "readout": readout,
    "encoding": encoding,
}


# ---- pc ----------------------------------------------------------------------------------------


def pc_first_step(cls: type[Learner], loss: Callable[[Tensor], Tensor], **changes: Any) -> tuple[Any, dict, dict]:
    """(learner, the grads it handed the optimizer, the exact gradient of ``loss``) for one step."""
    learner: Any = make(cls, with_(cls, **changes), DEEP)
    exact = all_gradients(learner.model, loss, X)
    log = record(learner.optimizer)
    learner.train_step(X, Y)
    return learner, named(learner, log, 0), exact


def ce(z: Tensor) -> Tensor:
    return F.cross_entropy(z, Y)


def mse(z: Tensor) -> Tensor:
    return 0.5 * (z - F.one_hot(Y, 4).float()).square().sum(1).mean()


def pc_gamma(cls: type[Learner]) -> None:
    """gamma γ: after one inference step ε_H = −γ δ_H, so the top hidden layer's update is γ × the
    exact gradient (Whittington & Bogacz 2017)."""
    _, got, exact = pc_first_step(cls, ce, gamma=0.3, inference_steps=1)
    fits_only(lambda g: close(got["fc2.weight"], g * exact["fc2.weight"], atol=1e-6), 0.3, 0.1)


def pc_steps(cls: type[Learner]) -> None:
    """inference_steps T: with T = 1 only the top hidden layer relaxes (fc1's update is exactly 0);
    with more steps the error reaches fc1."""
    _, got, _ = pc_first_step(cls, ce, inference_steps=1)
    _, got8, _ = pc_first_step(cls, ce)
    zero = torch.zeros_like(got["fc1.weight"])
    fits_only(lambda g: close(g["fc1.weight"], zero), got, got8)


def pc_top_loss(cls: type[Learner]) -> None:
    """top_loss = "mse": the output error is onehot − z, so after one step fc2's update is γ × the
    gradient of ½‖z − onehot‖², not of cross-entropy."""
    _, got, exact = pc_first_step(cls, mse, top_loss="mse", inference_steps=1)
    other = all_gradients(make(cls, cls.Params(), DEEP).model, ce, X)
    fits_only(lambda g: close(got["fc2.weight"], 0.1 * g["fc2.weight"], atol=1e-6), exact, other)


# ---- ff ----------------------------------------------------------------------------------------


def ff_loss(learner: Any, before: dict[str, Tensor], state: Tensor, **changes: Any) -> float:
    """Hinton's loss on the audit batch: positives with their label, negatives with a uniformly drawn
    wrong one; layer input ρ·x/‖x‖ (the first always, later ones if normalize), goodness Σh², loss
    Σ_l softplus(θ − G⁺) + softplus(G⁻ − θ) (batch means); ρ = norm_scale or √width, θ = threshold or width."""
    p = dataclasses.replace(learner.params, **changes)
    g = torch.Generator().set_state(state)
    wrong = (Y + torch.randint(1, 4, Y.shape, generator=g)) % 4
    assert bool((wrong != Y).all())
    scale = max(1.0, float(X.max()))

    def embed(labels: Tensor) -> Tensor:
        flat = X.flatten(1).clone()
        flat[:, :4] = F.one_hot(labels, 4).float() * scale
        return flat

    inp, total, n = torch.cat([embed(Y), embed(wrong)]), 0.0, len(Y)
    for i, name in enumerate(n for n, _ in weight_layers(learner.model)[:-1]):
        width_in, width_out = inp.shape[1], before[f"{name}.weight"].shape[0]
        if i == 0 or p.normalize:
            inp = F.normalize(inp, dim=1) * (p.norm_scale or math.sqrt(width_in))
        h = torch.relu(F.linear(inp, before[f"{name}.weight"], before[f"{name}.bias"]))
        good, theta = h.square().sum(1), p.threshold or float(width_out)
        total += float(F.softplus(theta - good[:n]).mean() + F.softplus(good[n:] - theta).mean())
        inp = h
    return total


def ff_option(option: str, value: Any) -> Check:
    """The first step's loss is Hinton's formula at the chosen value, not at the default."""

    def check(cls: type[Learner]) -> None:
        learner: Any = make(cls, with_(cls, **{option: value}), DEEP)
        before = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
        state = learner.generator.get_state()
        loss = learner.train_step(X, Y).loss
        default = getattr(cls.Params(), option)
        if option == "negatives":  # one choice: its effect is the wrong labels in the formula
            assert abs(loss - ff_loss(learner, before, state)) < 1e-4
            return
        fits_only(lambda v: abs(loss - ff_loss(learner, before, state, **{option: v})) < 1e-4, value, default)

    return check


# ---- dtp ---------------------------------------------------------------------------------------


def dtp_local_grads(learner: Any, before: dict[str, Tensor], **changes: Any) -> dict[str, Tensor]:
    """fc1's and fc2's weight gradients of Lee's local losses ‖h_l − ĥ_l‖²/(2·step) (batch mean):
    ĥ₂ = h₂ − step·e·W_out ("gradient") or h₂ + g_out(z − step·e) − g_out(z) ("target"),
    ĥ₁ = h₁ + g₂(ĥ₂) − g₂(h₂), with the step's updated inverses g; e = softmax(z) − onehot(y)."""
    p = dataclasses.replace(learner.params, **changes)
    w = {k: v.clone().requires_grad_(True) for k, v in before.items()}
    h0 = X.flatten(1)
    h1 = torch.relu(F.linear(h0, w["fc1.weight"], w["fc1.bias"]))
    h2 = torch.relu(F.linear(h1.detach(), w["fc2.weight"], w["fc2.bias"]))
    with torch.no_grad():
        z = F.linear(h2, before["out.weight"], before["out.bias"])
        e = z.softmax(1) - F.one_hot(Y, 4).float()
        if p.penultimate == "gradient":
            t2 = h2 - p.target_step * e @ before["out.weight"]
        else:
            g_out = learner.inverses["out"]
            t2 = h2 + g_out(z - p.target_step * e) - g_out(z)
        g2 = learner.inverses["fc2"]
        t1 = h1 + g2(t2) - g2(h2)
    local = sum((h - t).pow(2).sum(1).mean() / (2 * p.target_step) for h, t in ((h1, t1), (h2, t2)))
    grads = torch.autograd.grad(local, [w["fc1.weight"], w["fc2.weight"]])
    return dict(zip(["fc1.weight", "fc2.weight"], grads))


def dtp_step(cls: type[Learner], **changes: Any) -> tuple[Any, dict, dict, StepLog | None, Tensor]:
    """(learner, weights before, forward grads, inverse optimizer's log, noise state before) of one step."""
    learner: Any = make(cls, with_(cls, **changes), DEEP)
    log = record(learner.optimizer)
    inverse_log = record(learner.inverse_optimizer) if learner.inverse_optimizer is not None else None
    state = learner.noise.get_state()
    learner.train_step(X, Y)
    return learner, named(learner, log, 0, "before"), named(learner, log, 0), inverse_log, state


def dtp_targets(option: str, value: Any) -> Check:
    """target_step / penultimate: the hidden layers' updates are the local-loss gradients toward
    the targets of Lee's difference correction at the chosen value."""

    def check(cls: type[Learner]) -> None:
        learner, before, got, _, _ = dtp_step(cls, **{option: value})
        default = getattr(cls.Params(), option)

        def fits(v: Any) -> bool:
            try:
                ref = dtp_local_grads(learner, before, **{option: v})
            except KeyError:  # "target" needs the output layer's inverse, built only in that mode
                return False
            return all(close(got[k], ref[k], atol=1e-6) for k in ref)

        fits_only(fits, value, default)

    return check


def dtp_noise(cls: type[Learner]) -> None:
    """noise: the inverse g₂ trains on ½‖g₂(f₂(h̃)) − h̃‖², h̃ = h₁ + noise·ε (ε from the rule's stream)."""
    learner, before, _, inverse_log, state = dtp_step(cls, noise=0.5)
    assert inverse_log is not None
    h1 = torch.relu(F.linear(X.flatten(1), before["fc1.weight"], before["fc1.bias"]))
    eps = torch.randn(h1.shape, generator=torch.Generator().set_state(state))
    inverse = copy.deepcopy(learner.inverses["fc2"])
    with torch.no_grad():
        for p, v in zip(inverse.parameters(), inverse_log.before[0]):
            p.copy_(v)

    def fits(noise: float) -> bool:
        noisy = h1 + noise * eps
        f = torch.relu(F.linear(noisy, before["fc2.weight"], before["fc2.bias"]))
        grads = torch.autograd.grad(0.5 * (inverse(f) - noisy).pow(2).sum(1).mean(), list(inverse.parameters()))
        return all(close(a, b, atol=1e-6) for a, b in zip(inverse_log.grads[0], grads))

    fits_only(fits, 0.5, 0.1)


def dtp_inverse_lr(cls: type[Learner]) -> None:
    """inverse_lr: the inverses take Adam steps of that lr with no weight decay (whatever the forward
    weights' weight_decay)."""
    learner: Any = make(cls, with_(cls, inverse_lr=0.01, weight_decay=0.1), DEEP)
    log = record(learner.inverse_optimizer)
    for _ in range(2):
        learner.train_step(X, Y)
    fits_only(lambda lr: matches_formula(log, "adam", lr, 0.9, 0.0), 0.01, 1e-3)
    assert not matches_formula(log, "adam", 0.01, 0.9, 0.1), "the inverses are weight-decayed"


def dtp_freeze(cls: type[Learner]) -> None:
    """freeze_propagated: the layers whose target comes through an inverse (fc1 here) keep their
    weights; the others still learn."""

    def changed(freeze: bool) -> dict[str, bool]:
        learner: Any = make(cls, with_(cls, freeze_propagated=freeze), DEEP)
        start = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
        learner.train_step(X, Y)
        return {k: not torch.equal(v, start[k]) for k, v in learner.model.named_parameters()}

    frozen, free = changed(True), changed(False)
    assert frozen["fc2.weight"] and frozen["out.weight"]
    fits_only(lambda moved: not moved["fc1.weight"], frozen, free)


# ---- fwd_grad ----------------------------------------------------------------------------------


def weight_estimate(model: torch.nn.Module, state: Tensor, tangents: int) -> dict[str, Tensor]:
    """Baydin et al.'s forward gradient: (1/K) Σ_k (∇L·v_k) v_k, v_k ~ N(0, I) over all parameters."""
    exact = all_gradients(model, ce, X)
    g = torch.Generator().set_state(state)
    out = {k: torch.zeros_like(v) for k, v in exact.items()}
    for _ in range(tangents):
        v = {k: torch.randn(t.shape, generator=g) for k, t in exact.items()}
        slope = sum(float((exact[k] * v[k]).sum()) for k in exact)
        for k in out:
            out[k] += slope * v[k] / tangents
    return out


def activity_estimate(model: torch.nn.Module, state: Tensor, tangents: int) -> dict[str, Tensor]:
    """Ren et al.'s activity-perturbed forward gradient: per Linear layer, tangents u on its output
    s, d_b = ∂ℓ_b/∂s_b·u_b, ĝ = (1/KB) Σ_k d u, ∂W = ĝᵀ h_in, ∂b = Σ_b ĝ (one hidden layer)."""
    g = torch.Generator().set_state(state)
    h0 = X.flatten(1)
    s1 = F.linear(h0, model.fc1.weight, model.fc1.bias).detach().requires_grad_(True)
    h1 = torch.relu(s1)
    z = F.linear(h1, model.out.weight, model.out.bias)
    (ds1,) = torch.autograd.grad(F.cross_entropy(z, Y, reduction="sum"), s1)
    dz = z.softmax(1) - F.one_hot(Y, 4).float()
    out = {}
    for name, slope, h_in in (("fc1", ds1, h0), ("out", dz.detach(), h1.detach())):
        est = torch.zeros_like(slope)
        for _ in range(tangents):
            u = torch.randn(slope.shape, generator=g)
            est += (slope * u).sum(1, keepdim=True) * u / tangents
        est /= len(Y)
        out[f"{name}.weight"], out[f"{name}.bias"] = est.t() @ h_in, est.sum(0)
    return out


def fwd_option(option: str, value: Any) -> Check:
    """The step's estimate is the forward-gradient formula (its perturbation, its tangent count)."""

    def check(cls: type[Learner]) -> None:
        learner: Any = make(cls, with_(cls, **{option: value}))
        state = learner.noise.get_state()
        snapshot = copy.deepcopy(learner.model)
        log = record(learner.optimizer)
        learner.train_step(X, Y)
        got = named(learner, log, 0)
        p = learner.params

        def fits(v: Any) -> bool:
            q = dataclasses.replace(p, **{option: v})
            estimate = weight_estimate if q.perturb == "weight" else activity_estimate
            ref = estimate(snapshot, state, q.tangents)
            return all(close(got[k], ref[k], rtol=1e-3, atol=1e-5) for k in ref)

        fits_only(fits, value, getattr(cls.Params(), option))

    return check


# ---- the audit table ---------------------------------------------------------------------------

FEEDBACK: dict[str, Check | str] = {**OPTIMIZER, "batch_size": RUNNER, "feedback_scale": feedback_scale}
EVOLUTION_COMMON: dict[str, Check | str] = {"batch_size": runner_field, "fitness": fitness_kind}

AUDIT: dict[str, dict[str, Check | str]] = {
    "backprop": {**OPTIMIZER, "batch_size": runner_field, "loss": backprop_loss},
    "fa": FEEDBACK,
    "dfa": FEEDBACK,
    "sign_symmetry": {**OPTIMIZER, "batch_size": RUNNER, "(per-step sign refresh)": sign_refresh},
    # the magnitude rules (redrawn every batch / drawn once) are checked in test_fidelity_sign_concordant.py
    "brsf": {**OPTIMIZER, "batch_size": RUNNER},
    "frsf": {**OPTIMIZER, "batch_size": RUNNER},
    "es": {
        **EVOLUTION_COMMON,
        "population": es_population,
        "sigma": es_option("sigma", 0.2),
        "lr": es_lr,
        "weight_decay": es_weight_decay,
        "(antithetic pairs, rank shaping)": es_shaping,
    },
    "ga": {
        **EVOLUTION_COMMON,
        "population": ga_population,
        "sigma": ga_sigma,
        "selection": ga_selection,
        "truncation": ga_truncation,
        "tournament_size": ga_tournament_size,
        "elites": ga_elites,
        "crossover": ga_crossover,
    },
    "cmaes": {**EVOLUTION_COMMON, "population": cmaes_population, "sigma": cmaes_sigma},
    "snn_bptt": SPIKING,
    "snn_dfa": SPIKING,
    "pc": {**OPTIMIZER, "batch_size": RUNNER, "gamma": pc_gamma, "inference_steps": pc_steps, "top_loss": pc_top_loss},
    "ff": {
        **OPTIMIZER,
        "batch_size": RUNNER,
        "threshold": ff_option("threshold", 2.0),
        "norm_scale": ff_option("norm_scale", 2.0),
        "normalize": ff_option("normalize", False),
        "negatives": ff_option("negatives", "random_label"),
    },
    "dtp": {
        **OPTIMIZER,
        "batch_size": RUNNER,
        "penultimate": dtp_targets("penultimate", "target"),
        "target_step": dtp_targets("target_step", 0.5),
        "noise": dtp_noise,
        "inverse_lr": dtp_inverse_lr,
        "freeze_propagated": dtp_freeze,
    },
    "fwd_grad": {
        **OPTIMIZER,
        "batch_size": RUNNER,
        "perturb": fwd_option("perturb", "activity"),
        "tangents": fwd_option("tangents", 3),
    },
}

REGISTRY = learner_registry()
CASES = [(name, option) for name, checks in AUDIT.items() for option, check in checks.items() if callable(check)]


def test_every_option_of_every_learner_is_audited():
    """Every registered learner (entry points: built-ins and plugins) has an entry, and every field
    of its Params a check or a stated reason; a new learner or a new field fails here."""
    missing = {}
    for name in REGISTRY.names():
        fields = [f.name for f in dataclasses.fields(REGISTRY.get(name).Params)]
        uncovered = [f for f in fields if f not in AUDIT.get(name, {})]
        if uncovered:
            missing[name] = uncovered
    assert not missing, f"options with no audit check or stated reason (add them to AUDIT): {missing}"
    stale = {n: sorted(set(AUDIT[n]) - {f.name for f in dataclasses.fields(REGISTRY.get(n).Params)}) for n in AUDIT}
    extra = {n: [f for f in fs if not f.startswith("(")] for n, fs in stale.items()}
    assert not any(extra.values()), f"audited options the learner no longer has: {extra}"
    reasons = [c for checks in AUDIT.values() for c in checks.values() if isinstance(c, str)]
    assert all(len(r) > 20 for r in reasons), "an option left unchecked needs its reason"


def test_the_optimizer_formula_is_torchs():
    """The formulas the audit checks against agree with torch's own SGD and Adam on a plain tensor
    (and a formula with a wrong option does not), so a pass means the option acts as documented."""
    for kind, momentum in (("sgd", 0.5), ("adam", 0.9)):
        w = torch.nn.Parameter(torch.randn(5, generator=torch.Generator().manual_seed(1)))
        opt = torch.optim.SGD([w], lr=0.1, momentum=momentum, weight_decay=0.2) if kind == "sgd" else None
        opt = opt or torch.optim.Adam([w], lr=0.1, weight_decay=0.2)
        log = record(opt)
        for step in range(3):
            w.grad = torch.full((5,), 0.3 * (step + 1))
            opt.step()
        assert matches_formula(log, kind, 0.1, momentum, 0.2)
        assert not matches_formula(log, kind, 0.1, momentum, 0.0)
        assert not matches_formula(log, kind, 0.05, momentum, 0.2)


@pytest.mark.parametrize(("learner", "option"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_option_has_its_documented_effect(learner: str, option: str):
    check = AUDIT[learner][option]
    assert callable(check)
    torch.manual_seed(0)
    check(REGISTRY.get(learner))


def test_spiking_rules_refuse_speech_encodings_and_read_frames():
    """encoding applies to images only: on speech the frames are the time axis (a documented limit)."""
    cls = REGISTRY.get("snn_bptt")
    speech = dataclasses.replace(make(cls, cls.Params()).task, modality="speech", input_shape=(5, 16))
    with pytest.raises(ValueError, match="encoding"):
        cls(ModelSpec(hidden=(8,)), speech, with_(cls, encoding="rate"), torch.Generator().manual_seed(0), X.device)


# ---- the plugin audit: bpbench check --options, and the learning probe ---------------------------


@dataclasses.dataclass(frozen=True)
class SmoothedParams(BackpropLossParams):
    """Backprop's options plus a label smoothing the (broken) rule below reads nowhere."""

    smoothing: float = param(0.1, ge=0, lt=1)


class IgnoresSmoothing(Backprop):
    """A plugin with a declared option it never uses."""

    Params = SmoothedParams


class Ascends(Backprop):
    """A plugin whose update climbs its loss (a sign error)."""

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        return -F.cross_entropy(logits, y)


def separable(n: int, seed: int) -> Split:
    """Four classes of 1x4x4 images: a class-specific pattern plus noise (easy to learn)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(4, *INFO.input_shape, generator=torch.Generator().manual_seed(99))
    y = torch.arange(n) % 4
    return Split(patterns[y] + 0.5 * torch.randn(n, *INFO.input_shape, generator=g), y)


DATA = TaskData(INFO, separable(128, 1), separable(64, 2), separable(64, 3))


def test_check_options_reports_each_option_and_warns_on_an_ignored_one():
    effects = {e.option: e for e in check_options(IgnoresSmoothing, DATA)}
    assert list(effects) == [f.name for f in dataclasses.fields(SmoothedParams)]
    assert effects["smoothing"].change == 0.0
    assert effects["smoothing"].warning == "option smoothing = 0.2 changed nothing in 3 updates"
    for name in ("optimizer", "lr", "weight_decay", "loss"):
        assert effects[name].change and effects[name].change > 0.01 and effects[name].warning is None, effects[name]
    assert effects["momentum"].with_ == "optimizer = 'sgd'" and effects["momentum"].warning is None
    assert effects["batch_size"].change is None and effects["batch_size"].warning is None
    lines = options_report("ignores_smoothing", list(effects.values()), (16, 16))
    assert lines[-1] == "warning: option smoothing = 0.2 changed nothing in 3 updates"
    assert sum(line.startswith("warning") for line in lines) == 1


def test_check_options_finds_no_silent_option_in_backprop():
    """The reference rule: every option changes the updates (momentum with optimizer = 'sgd')."""
    effects = check_options(REGISTRY.get("backprop"), DATA)
    assert [e.warning for e in effects] == [None] * len(effects)


def test_the_learning_probe_warns_for_a_rule_that_does_not_learn():
    """A sign error stays at or below chance and is named with its figure and chance; backprop is not."""
    good = check_learns(REGISTRY.get("backprop"), DATA, BackpropLossParams(lr=0.01), MLP, samples=128)
    bad = check_learns(Ascends, DATA, BackpropLossParams(lr=0.01), MLP, samples=128)
    assert good.chance == bad.chance == 0.25
    assert good.accuracy > 0.8 and good.warning is None
    assert bad.accuracy <= 0.25
    assert bad.warning == (
        f"test accuracy {bad.accuracy:.3f} after 50 updates on the check's training samples is at or below chance "
        "(0.250, the most common class's share of the test samples): the rule does not learn here"
    )


def docs_example(marker: str) -> dict[str, Any]:
    """Run the python block after ``marker`` in docs/plugins.md; its namespace."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    block = text.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("kolen_pollack_example")  # a real module: dataclasses look their module up
    sys.modules[module.__name__] = module
    exec(compile(block, "docs/plugins.md", "exec"), module.__dict__)
    return module.__dict__


def test_the_kolen_pollack_example_of_the_plugin_docs_conforms_learns_and_aligns():
    """docs/plugins.md's worked example of the feedback routes: the contract, learning above chance,
    no silent option, and B converging to W (their angle shrinks) as Kolen–Pollack promises."""
    kp = docs_example("<!-- kolen-pollack:")["KolenPollack"]
    digits_cls = task_registry().get("digits")
    digits = digits_cls().load(digits_cls.Params())
    spec = ModelSpec(hidden=(32,))
    check_learner(kp, digits, model=spec)
    learning = check_learns(kp, digits, kp.Params(), spec, samples=256)
    assert learning.warning is None and learning.accuracy > 2 * learning.chance, learning
    assert [e.warning for e in check_options(kp, digits)] == [None] * len(dataclasses.fields(kp.Params))
    learner: Any = kp(
        spec, digits.info, kp.Params(weight_decay=1e-3, lr=0.01), torch.Generator().manual_seed(0), X.device
    )
    x, y = digits.train.x[:64], digits.train.y[:64]

    def angle() -> float:
        w, b = learner.model.out.weight.detach().flatten(), learner.feedback["out"].flatten()
        return math.degrees(math.acos(float(w @ b / (w.norm() * b.norm()))))

    start = angle()
    for _ in range(40):
        learner.train_step(x, y)
    assert angle() < start - 10, (start, angle())
