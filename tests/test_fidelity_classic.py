"""The classic rules are the rules their papers describe, checked against references written from
the papers: fa (Lillicrap et al. 2016) and sign symmetry (Liao et al. 2016) send the error through
their feedback matrices, with the output layer exact (scale and direction); dfa (Nøkland 2016)
projects the output error to every hidden layer; ES (Salimans et al. 2017) is the antithetic
rank-shaped estimate; the GA (Such et al. 2017) keeps its elite, picks parents among the best and
mutates by N(0, σ²); CMA-ES (DEAP) descends the loss it is given; backprop is exact for both losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from bpbench.experiments.plan.registry import task_registry
from bpbench.learners.backprop import Backprop, BackpropLossParams, BackpropParams
from bpbench.learners.base import Learner
from bpbench.learners.cmaes import CMAES, CMAESParams
from bpbench.learners.dfa import DirectFeedbackAlignment
from bpbench.learners.es import ESParams, EvolutionStrategies, centered_ranks
from bpbench.learners.fa import FeedbackAlignment
from bpbench.learners.feedback import FeedbackParams
from bpbench.learners.ga import GAParams, GeneticAlgorithm
from bpbench.learners.models import ModelSpec
from bpbench.learners.pc import PCParams, PredictiveCoding
from bpbench.learners.sign_symmetry import SignSymmetry
from fidelity_tools import projection

CPU = torch.device("cpu")
MLP = ModelSpec(hidden=(32, 16))


@pytest.fixture(scope="module")
def digits():
    cls = task_registry().get("digits")
    return cls().load(cls.Params())


@pytest.fixture(scope="module")
def small(digits):
    """Digits pooled to 4x4: 16 inputs, so a linear model has 170 weights (cheap CMA-ES)."""
    info = dataclasses.replace(digits.info, input_shape=(1, 4, 4))
    return info, F.avg_pool2d(digits.train.x[:64], 2), digits.train.y[:64]


def make(cls: type[Learner], info, params, spec: ModelSpec = MLP, seed: int = 0) -> Learner:
    return cls(spec, info, params, torch.Generator().manual_seed(seed), CPU)


def manual_feedback_gradients(model, x, y, feedback, direct: bool) -> dict[str, torch.Tensor]:
    """δ_out = (softmax − onehot)/B; hidden δ_l = (δ_{l+1} B_{l+1}) ⊙ relu'(s_l) (fa, sign symmetry)
    or (δ_out B_l) ⊙ relu'(s_l) with B_l of shape (classes, width) (dfa); ∂W_l = δ_lᵀ h_{l−1}."""
    layers = [model.fc1, model.fc2, model.out]
    names = ["fc1", "fc2", "out"]
    hs, ss, h = [], [], x.flatten(1)
    for layer in layers:
        hs.append(h)
        s = F.linear(h, layer.weight, layer.bias)
        ss.append(s)
        h = torch.relu(s)
    delta = (ss[-1].softmax(1) - F.one_hot(y, 10).float()) / len(y)
    out_error, grads = delta, {}
    for i in reversed(range(3)):
        grads[names[i]] = delta.t() @ hs[i]
        if i:
            above = out_error @ feedback[names[i]] if direct else delta @ feedback[names[i]]
            delta = above * (ss[i - 1] > 0)
    return grads


@pytest.mark.parametrize("rule", ["fa", "dfa", "sign_symmetry"])
def test_feedback_rules_follow_their_feedback_with_the_output_layer_exact(digits, rule: str) -> None:
    x, y = digits.train.x[:64], digits.train.y[:64]
    cls, params = {
        "fa": (FeedbackAlignment, FeedbackParams()),
        "dfa": (DirectFeedbackAlignment, FeedbackParams()),
        "sign_symmetry": (SignSymmetry, BackpropParams(lr=0.02)),
    }[rule]
    learner = make(cls, digits.info, params)
    start = {n: m.weight.detach().sign() for n, m in learner.model.named_children() if n in ("fc2", "out")}
    for i in range(1, 6):  # weights moved: sign(W) must follow them
        learner.train_step(digits.train.x[64 * i : 64 * i + 64], digits.train.y[64 * i : 64 * i + 64])
    model = learner.model
    if rule == "sign_symmetry":  # some signs flipped, so stale feedback would differ
        assert any(not torch.equal(start[n], getattr(model, n).weight.sign()) for n in start)
    if rule == "sign_symmetry":
        feedback = {}  # written from BioTorch's uSF: sign(W)·√(2 / (fan_in + fan_out)), of the current W
        for n in ("fc2", "out"):
            w = getattr(model, n).weight.detach()
            feedback[n] = w.sign() * (2.0 / (w.shape[0] + w.shape[1])) ** 0.5
    else:
        feedback = {n: b.clone() for n, b in learner.feedback.items()}
    with torch.no_grad():
        expected = manual_feedback_gradients(model, x, y, feedback, direct=rule == "dfa")
    truth = learner.true_gradient(x, y)
    learner.train_step(x, y)
    signal = learner.update_signal()
    for name, g in expected.items():
        assert torch.allclose(signal[name], g, rtol=1e-4, atol=1e-7), (rule, name)
    assert projection(signal["out"], truth["out"]) == pytest.approx(1.0, abs=1e-5)  # exact: scale too
    assert abs(projection(signal["fc1"], truth["fc1"]) - 1) > 1e-3  # the hidden layers are not backprop


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_backprop_is_the_exact_gradient_of_its_own_loss(digits, loss: str) -> None:
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(Backprop, digits.info, BackpropLossParams(loss=loss))
    truth = learner.true_gradient(x, y)
    learner.train_step(x, y)
    for name, g in truth.items():
        assert torch.allclose(learner.update_signal()[name], g, rtol=1e-5, atol=1e-8), name
    other = make(Backprop, digits.info, BackpropLossParams(loss="mse" if loss == "ce" else "ce"))
    assert not torch.allclose(other.true_gradient(x, y)["out"], truth["out"])  # the losses differ


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_backprop_loss_is_pcs_top_loss(digits, loss: str) -> None:
    """backprop's loss = "mse" is pc's squared error ½‖z − onehot(y)‖² (its partner): on a linear
    model, where pc has nothing to relax, pc's local update (−ε_out xᵀ / B, written from its own top
    error) equals backprop's gradient for either loss."""
    x, y = digits.train.x[:64], digits.train.y[:64]
    linear = ModelSpec(hidden=())
    backprop = make(Backprop, digits.info, BackpropLossParams(loss=loss), linear)
    pc = make(PredictiveCoding, digits.info, PCParams(top_loss=loss), linear)
    truth = backprop.true_gradient(x, y)
    pc.train_step(x, y)
    assert torch.allclose(pc.update_signal()["out"], truth["out"], rtol=1e-5, atol=1e-7)


def test_es_estimate_is_the_antithetic_rank_shaped_one(small) -> None:
    """g = −Σ_i (r(mean + σε_i) − r(mean − σε_i)) ε_i / (P σ), r the centered ranks of the fitness."""
    info, x, y = small
    sigma = 0.05
    es = make(EvolutionStrategies, info, ESParams(population=32, sigma=sigma, batch_size=64), ModelSpec(hidden=()))
    mean = es.strategy.mean.detach().clone()
    es.train_step(x, y)
    eps = es.strategy._eps
    fitness, _ = es.forward.evaluate(torch.cat([mean + sigma * eps, mean - sigma * eps]), x, y, "loss")
    ranks = centered_ranks(fitness)
    expected = -(ranks[:16] - ranks[16:]) @ eps / (32 * sigma)
    assert torch.allclose(es.strategy.gradient, expected, rtol=1e-5, atol=1e-7)
    assert float(eps.var()) == pytest.approx(1.0, abs=0.05)  # standard normal directions


def test_ga_keeps_its_elite_selects_among_the_best_and_mutates_by_sigma(small) -> None:
    info, x, y = small
    sigma = 0.02
    ga = make(
        GeneticAlgorithm,
        info,
        GAParams(population=32, truncation=4, elites=1, sigma=sigma, batch_size=64),
        ModelSpec(hidden=()),
    )
    before = ga.population.matrix.clone()
    fitness, _ = ga.forward.evaluate(before, x, y, "loss")
    ga.train_step(x, y)
    after = ga.population.matrix
    best = int(fitness.argmax())
    assert torch.equal(after[0], before[best])  # the elite, unchanged
    assert torch.equal(ga.forward.flat.flatten(ga.model), before[best])  # the model holds the best
    distance = torch.cdist(after[1:].double(), before.double())
    parent = distance.argmin(1)
    top = set(fitness.argsort(descending=True)[:4].tolist())
    assert set(parent.tolist()) <= top, (parent.tolist(), top)  # truncation: parents among the 4 best
    noise = after[1:] - before[parent]
    assert float(noise.std()) == pytest.approx(sigma, rel=0.05) and abs(float(noise.mean())) < 0.1 * sigma


def test_cmaes_descends_the_loss_and_its_model_is_the_centroid(small) -> None:
    info, x, y = small
    cma = make(CMAES, info, CMAESParams(population=16, sigma=0.1, batch_size=64), ModelSpec(hidden=()))
    start = float(F.cross_entropy(cma.predict(x), y))
    for _ in range(25):
        before = cma.forward.flat.flatten(cma.model)
        cma.train_step(x, y)
        signal = torch.cat([t.flatten() for t in cma.update_signal().values()])
        after = cma.forward.flat.flatten(cma.model)
    weights = cma.forward.flat.unflatten(before - after)["out.weight"].flatten()
    assert torch.allclose(signal, weights, atol=1e-6)  # the update moved the model along minus its signal
    end = float(F.cross_entropy(cma.predict(x), y))
    assert end < start - 0.3, (start, end)
