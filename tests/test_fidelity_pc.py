"""Predictive coding is the rule of Whittington & Bogacz (2017): its update equals ∂E/∂W at the
state T steps of gradient descent on the energy reach (an autograd reference, written from the
paper's energy); near equilibrium (γT >= 5) fc1's update has the true gradient's size too."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bpbench.experiments.plan.registry import task_registry
from bpbench.learners.losses import top_loss
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.learners.pc import PCParams, PredictiveCoding
from fidelity_tools import norm_ratio, projection


@pytest.fixture(scope="module")
def digits():
    cls = task_registry().get("digits")
    return cls().load(cls.Params())


def make(data, spec: ModelSpec, **params) -> PredictiveCoding:
    return PredictiveCoding(spec, data.info, PCParams(**params), torch.Generator().manual_seed(0), torch.device("cpu"))


def energy_reference(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, gamma: float, loss: str, act
) -> dict[str, torch.Tensor]:
    """∂(mean E)/∂W per layer after ``steps`` simultaneous gradient steps of size γ on the value
    nodes, E = Σ_l ½‖v_l − W_l f(v_{l−1}) − b_l‖² + ℓ(W_out f(v_H) + b_out, y), v_0 = x clamped,
    starting from the feedforward state. Everything by autograd on E itself."""
    layers = [m for _, m in weight_layers(model)]
    ws = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in layers]
    a0 = x.flatten(1)

    def energy(v: list[torch.Tensor], w: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        inp, total = a0, torch.zeros(())
        for (wl, bl), vl in zip(w[:-1], v):
            total = total + 0.5 * (vl - F.linear(inp, wl, bl)).square().sum()
            inp = act(vl)
        logits = F.linear(inp, *w[-1])
        return total + top_loss(logits, y, loss) * x.shape[0]  # summed over the batch

    with torch.no_grad():
        v, inp = [], a0
        for wl, bl in ws[:-1]:
            v.append(F.linear(inp, wl, bl))
            inp = act(v[-1])
    for _ in range(steps):
        v = [t.detach().requires_grad_(True) for t in v]
        grads = torch.autograd.grad(energy(v, ws), v)
        v = [t - gamma * g for t, g in zip(v, grads)]
    w = [(wl.requires_grad_(True), bl) for wl, bl in ws]
    grads = torch.autograd.grad(energy([t.detach() for t in v], w) / x.shape[0], [wl for wl, _ in w])
    return {name: g for (name, _), g in zip(weight_layers(model), grads)}


@pytest.mark.parametrize("steps, gamma, loss, activation", [(8, 0.1, "ce", "relu"), (20, 0.2, "mse", "tanh")])
def test_update_is_the_energy_gradient_after_inference(
    digits, steps: int, gamma: float, loss: str, activation: str
) -> None:
    """Catches inference capped short of T, fixed (not recomputed) predictions, learning from the
    feedforward instead of the relaxed activity, and mis-scaled hidden errors."""
    x, y = digits.train.x[:32], digits.train.y[:32]
    learner = make(
        digits, ModelSpec(hidden=(24, 16), activation=activation), inference_steps=steps, gamma=gamma, top_loss=loss
    )
    reference = energy_reference(
        copy.deepcopy(learner.model), x, y, steps, gamma, loss, {"relu": torch.relu, "tanh": torch.tanh}[activation]
    )
    learner.train_step(x, y)
    signal = learner.update_signal()
    for name, g in reference.items():
        relative = float((signal[name] - g).norm() / g.norm())
        assert torch.allclose(signal[name], g, rtol=1e-4, atol=1e-6), (name, relative)


def test_near_equilibrium_fc1_update_has_the_gradients_size(digits) -> None:
    """γT = 5 (T = 50, γ = .1), the study's 256-256: fc1's update is the true gradient in direction
    and nearly in size, ‖u‖/‖g‖ >= .8 (measured .86), every layer's projection ⟨u, g⟩/‖g‖² in
    [.8, 1.2] (.85, .92, .97); at T = 8 fc1 gets ~.17 of the norm (partial inference)."""
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(digits, ModelSpec(hidden=(256, 256)), inference_steps=50, gamma=0.1)
    g = learner.true_gradient(x, y)
    learner.train_step(x, y)
    u = learner.update_signal()
    assert norm_ratio(u["fc1"], g["fc1"]) >= 0.8, norm_ratio(u["fc1"], g["fc1"])
    assert all(0.8 <= projection(u[k], g[k]) <= 1.2 for k in g), {k: projection(u[k], g[k]) for k in g}
    partial = make(digits, ModelSpec(hidden=(256, 256)), inference_steps=8, gamma=0.1)
    partial.train_step(x, y)
    assert norm_ratio(partial.update_signal()["fc1"], g["fc1"]) < 0.5  # the control: the test can fail
