"""Helpers of the fidelity tests: scale and direction of an update against a reference."""

from __future__ import annotations

import torch
from torch import Tensor


def projection(u: Tensor, g: Tensor) -> float:
    """⟨u, g⟩ / ‖g‖²: 1 when u's component along g is g itself (scale as well as direction)."""
    u, g = u.detach().flatten().double(), g.detach().flatten().double()
    return float(u @ g / (g @ g))


def cosine(u: Tensor, g: Tensor) -> float:
    u, g = u.detach().flatten().double(), g.detach().flatten().double()
    return float(u @ g / (u.norm() * g.norm()))


def norm_ratio(u: Tensor, g: Tensor) -> float:
    """‖u‖ / ‖g‖."""
    return float(u.detach().double().norm() / g.detach().double().norm())


def all_gradients(model: torch.nn.Module, loss_of_logits, x: Tensor) -> dict[str, Tensor]:
    """Exact gradient of ``loss_of_logits(model(x))`` for every parameter (weights and biases),
    by autograd on a functional copy: the model's own parameters and grads are untouched."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    with torch.enable_grad():
        loss = loss_of_logits(torch.func.functional_call(model, params, (x,)))
        grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, grads))
