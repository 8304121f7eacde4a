"""Difference target propagation is Lee et al.'s (2015) rule as Bartunov et al. (2018) ran it: the
inverses learn to reconstruct *noise-corrupted* activity, and the targets go down through the
inverses *after* their update, with the difference correction (references written from the
papers' formulas, checked exactly)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bpbench.experiments.plan.registry import task_registry
from bpbench.learners.dtp import DifferenceTargetPropagation, DTPParams
from bpbench.learners.models import ModelSpec, weight_layers

SPEC = ModelSpec(hidden=(32, 24), activation="tanh")


@pytest.fixture(scope="module")
def digits():
    cls = task_registry().get("digits")
    return cls().load(cls.Params())


def make(data, **params) -> DifferenceTargetPropagation:
    return DifferenceTargetPropagation(
        SPEC, data.info, DTPParams(**params), torch.Generator().manual_seed(0), torch.device("cpu")
    )


def layer_io(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(input, output after its activation) of each connection layer (logits for ``out``)."""
    ins, outs, h = {}, {}, x.flatten(1)
    for name, layer in weight_layers(model):
        ins[name] = h
        h = layer(h)
        if name != "out":
            h = torch.tanh(h)
        outs[name] = h
    return ins, outs


@pytest.mark.parametrize("penultimate", ["gradient", "target"])
def test_inverses_learn_to_reconstruct_the_noisy_activity(digits, penultimate: str) -> None:
    """The inverses' gradient is that of ½‖g(f(h̃)) − h̃‖², h̃ = h + noise·ε, ε from the learner's
    noise stream: catches inverses trained without noise or toward the clean h."""
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(digits, penultimate=penultimate, noise=0.5)
    inverses = copy.deepcopy(learner.inverses)
    noise = torch.Generator().manual_seed(0)
    noise.set_state(learner.noise.get_state())
    with torch.no_grad():
        ins, _ = layer_io(learner.model, x)
    layers = dict(weight_layers(learner.model))
    loss = torch.zeros(())
    for name, inverse in inverses.items():
        noisy = ins[name] + 0.5 * torch.randn(ins[name].shape, generator=noise)
        with torch.no_grad():
            f = layers[name](noisy)
            f = f if name == "out" else torch.tanh(f)
        loss = loss + 0.5 * (inverse(f) - noisy).pow(2).sum(1).mean()
    reference = torch.autograd.grad(loss, list(inverses.parameters()))
    learner.train_step(x, y)
    for (name, p), g in zip(learner.inverses.named_parameters(), reference):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("penultimate", ["gradient", "target"])
def test_targets_come_through_the_updated_inverses(digits, penultimate: str) -> None:
    """Each hidden layer's update is the gradient of ‖h_l − ĥ_l‖²/(2·step) with ĥ from the top
    target down by ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) − g_l(h_l), through the inverses as they are *after*
    this step's inverse update: catches targets computed before the inverses learn."""
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(digits, penultimate=penultimate, target_step=0.5)
    for _ in range(3):  # inverses that have moved away from their initialization
        learner.train_step(x, y)
    before = copy.deepcopy(learner.model)
    learner.train_step(x, y)
    after = learner.inverses
    step = 0.5
    with torch.no_grad():
        ins, outs = layer_io(before, x)
        z = outs["out"]
        e = torch.softmax(z, 1) - F.one_hot(y, 10).float()
        if penultimate == "gradient":
            targets = {"fc2": outs["fc2"] - step * e @ before.out.weight}
        else:
            targets = {"fc2": outs["fc2"] + after["out"](z - step * e) - after["out"](z)}
        targets["fc1"] = outs["fc1"] + after["fc2"](targets["fc2"]) - after["fc2"](outs["fc2"])
    layers = dict(weight_layers(before))
    signal = learner.update_signal()
    for name in ("fc1", "fc2"):
        w = layers[name].weight.detach().clone().requires_grad_(True)
        h = torch.tanh(F.linear(ins[name], w, layers[name].bias.detach()))
        (g,) = torch.autograd.grad((h - targets[name]).pow(2).sum(1).mean() / (2 * step), w)
        relative = float((signal[name] - g).norm() / g.norm())
        assert torch.allclose(signal[name], g, rtol=1e-4, atol=1e-7), (name, relative)


def test_freezing_the_propagated_layers_keeps_them_at_their_initial_weights(digits) -> None:
    x, y = digits.train.x[:64], digits.train.y[:64]
    for penultimate, frozen in [("gradient", {"fc1"}), ("target", {"fc1", "fc2"})]:
        learner = make(digits, penultimate=penultimate, freeze_propagated=True)
        start = {n: m.weight.detach().clone() for n, m in weight_layers(learner.model)}
        for _ in range(3):
            learner.train_step(x, y)
        moved = {n for n, m in weight_layers(learner.model) if not torch.equal(m.weight, start[n])}
        assert moved == {"fc1", "fc2", "out"} - frozen, (penultimate, moved)
        assert learner.propagated_layers() == frozen
