"""brSF and frSF (Liao, Leibo & Poggio 2016; BioTorch's ``brsf`` and ``frsf``) are the rules their
sources describe: the error travels back through B = |M| ∘ sign(W) with the signs of the *current*
weights; |M| is uniform in [0, 1/sqrt(fan_in)] (the weights' init scale), redrawn every minibatch
(brsf) or drawn once (frsf); the output layer's update is backprop's (scale and direction)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.learners.backprop import BackpropParams
from bpbench.learners.models import ModelSpec
from fidelity_tools import projection

CPU = torch.device("cpu")
MLP = ModelSpec(hidden=(32, 16))


@pytest.fixture(scope="module")
def digits():
    cls = task_registry().get("digits")
    return cls().load(cls.Params())


def reference_gradients(model, x, y, feedback) -> dict[str, torch.Tensor]:
    """δ_out = (softmax − onehot)/B; δ_l = (δ_{l+1} B_{l+1}) ⊙ relu'(s_l); ∂W_l = δ_lᵀ h_{l−1} (from the paper)."""
    names = ["fc1", "fc2", "out"]
    hs, ss, h = [], [], x.flatten(1)
    for name in names:
        layer = getattr(model, name)
        hs.append(h)
        ss.append(F.linear(h, layer.weight, layer.bias))
        h = torch.relu(ss[-1])
    delta = (ss[-1].softmax(1) - F.one_hot(y, 10).float()) / len(y)
    grads = {}
    for i in reversed(range(3)):
        grads[names[i]] = delta.t() @ hs[i]
        if i:
            delta = (delta @ feedback[names[i]]) * (ss[i - 1] > 0)
    return grads


@pytest.mark.parametrize("rule", ["brsf", "frsf"])
def test_sign_concordant_feedback_follows_current_signs_and_its_magnitude_rule(digits, rule: str) -> None:
    cls = learner_registry().get(rule)
    learner = cls(MLP, digits.info, BackpropParams(lr=0.02), torch.Generator().manual_seed(0), CPU)
    first = {n: m.clone() for n, m in learner.magnitude.items()}
    start = {n: getattr(learner.model, n).weight.detach().sign() for n in ("fc2", "out")}
    previous: dict[str, torch.Tensor] = {}
    for i in range(1, 6):  # weights move, so stale signs would differ
        learner.train_step(digits.train.x[64 * i : 64 * i + 64], digits.train.y[64 * i : 64 * i + 64])
        previous = {n: b.abs().clone() for n, b in learner.feedback.items()}
    assert any(not torch.equal(start[n], getattr(learner.model, n).weight.sign()) for n in start)
    x, y = digits.train.x[:64], digits.train.y[:64]
    before = copy.deepcopy(learner.model)  # the weights the step's feedback must take its signs from
    truth = learner.true_gradient(x, y)
    learner.train_step(x, y)
    signal = learner.update_signal()
    for name, b in learner.feedback.items():
        w = getattr(before, name).weight.detach()
        assert torch.equal(b.sign(), w.sign()), name  # the signs of the current W
        bound = 1 / math.sqrt(w.shape[1])
        magnitude = b.abs()
        assert float(magnitude.max()) <= bound
        assert float(magnitude.mean()) / bound == pytest.approx(0.5, abs=0.06)  # |U(-bound, bound)|: scale too
        if rule == "brsf":  # a new magnitude every minibatch
            assert not torch.allclose(magnitude, previous[name])
        else:  # the one drawn at setup
            assert torch.equal(magnitude, first[name])
            assert torch.equal(magnitude, previous[name])
    with torch.no_grad():
        expected = reference_gradients(before, x, y, {n: b.clone() for n, b in learner.feedback.items()})
    for name, g in expected.items():
        assert torch.allclose(signal[name], g, rtol=1e-4, atol=1e-7), (rule, name)
    assert projection(signal["out"], truth["out"]) == pytest.approx(1.0, abs=1e-5)  # exact: scale too
    assert abs(projection(signal["fc1"], truth["fc1"]) - 1) > 1e-3  # the hidden layers are not backprop


def test_brsf_and_frsf_draw_from_the_run_seed_only(digits) -> None:
    """Same seed, same magnitudes and updates; the magnitude state survives state_dict."""
    for rule in ("brsf", "frsf"):
        cls = learner_registry().get(rule)
        a, b = (cls(MLP, digits.info, cls.Params(), torch.Generator().manual_seed(3), CPU) for _ in range(2))
        for learner in (a, b):
            learner.train_step(digits.train.x[:64], digits.train.y[:64])
        assert all(torch.equal(a.magnitude[n], b.magnitude[n]) for n in a.magnitude)
        c = cls(MLP, digits.info, cls.Params(), torch.Generator().manual_seed(4), CPU)
        c.load_state_dict(a.state_dict())
        assert all(torch.equal(a.magnitude[n], c.magnitude[n]) for n in a.magnitude)
