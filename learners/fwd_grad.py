"""Forward gradients: a gradient estimate from forward-mode differentiation, with no backward pass.

For a random tangent v ~ N(0, I), the directional derivative ∇L·v comes out of one forward-mode
pass (``torch.func.jvp``), and (∇L·v) v is an unbiased estimate of ∇L, since E[v vᵀ] = I.

- ``perturb = "weight"`` (Baydin et al. 2022, "Gradients without backpropagation"): v is drawn
  over all parameters (weights and biases) at once; one ``torch.func.jvp`` over
  ``torch.func.functional_call`` of the shared model gives L and ∇L·v, and the estimate is
  g = (∇L·v) v. Its cosine with the true gradient is about 1/√(number of parameters).
- ``perturb = "activity"`` (Ren et al. 2023, "Scaling forward gradient with local losses"):
  each connection layer's pre-activations s_l (B, n_l) get their own tangent u_l, one row per
  example; one forward-mode pass per layer, from s_l up to the per-example losses ℓ_b, gives
  every example's directional derivative d_b = ∂ℓ_b/∂s_b · u_b; the layer's weight update is
  built from its input h_{l-1} as backprop would build it: ĝ_W = (1/B) Σ_b d_b u_b h_{l-1,b}ᵀ,
  ĝ_b = (1/B) Σ_b d_b u_b. The variance now scales with the layer's width, not the weight count.

One ``train_step`` = one minibatch: ``tangents`` estimates (default 1) averaged, then one
optimizer step (SGD with momentum or Adam, as ``backprop``) along them. No ``backward()``,
no finite differences. ``loss`` is the minibatch's mean cross-entropy before the update;
``update_signal`` is the estimate per weight layer; no layer is exact by construction.

The runner's FLOP counter (``torch.utils.flop_counter``) sees forward-mode work: a jvp's
dual matmuls run as ordinary aten ops. A weight-perturbed step counts three forward passes'
worth: per layer the primal product and the tangent's two, ẋ·Wᵀ and x·Vᵀ (for the first
layer ẋ is zero, but torch's jvp materializes it and multiplies anyway, so that product is
real work, and counted). An activity-perturbed step counts the forward pass, each layer's
jvp from its pre-activations up, and one outer product per layer for the weight update.

Model support: no batch norm (a jvp cannot update running statistics in place); the activity
variant also needs an MLP without dropout (each per-layer pass must see the same network).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import StepOutput
from bpbench.learners.models import ModelSpec
from bpbench.learners.params import param

PERTURB = ("weight", "activity")


def per_example_losses(rest: list[nn.Module], y: Tensor) -> Callable[[Tensor], Tensor]:
    """s -> (B,) cross-entropy of each example after running s through the modules ``rest``."""
    def losses(s: Tensor) -> Tensor:
        for module in rest:
            s = module(s)
        return F.cross_entropy(s, y, reduction="none")
    return losses


@dataclass(frozen=True)
class ForwardGradientParams(BackpropParams):
    """BackpropParams plus perturb: "weight" (Baydin et al.) | "activity" (Ren et al.);
    tangents >= 1: random directions per step, their estimates averaged."""

    perturb: Literal["weight", "activity"] = "weight"
    tangents: int = param(1, ge=1)


class ForwardGradient(Backprop):
    """Gradient descent along forward-gradient estimates (weight- or activity-perturbed)."""

    Params = ForwardGradientParams
    params: ForwardGradientParams

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:  # run at study validation, before any run
        super().check_model(spec, params)
        perturb = (params or cls.Params()).perturb
        if spec.batchnorm:
            raise ValueError("fwd_grad: model.batchnorm = true is not supported "
                             "(a jvp cannot update running statistics); use batchnorm = false")
        if perturb == "activity" and spec.arch != "mlp":
            raise ValueError(f"fwd_grad: perturb = 'activity' with model.arch = {spec.arch!r}; allowed is 'mlp'")
        if perturb == "activity" and spec.dropout > 0:
            raise ValueError(f"fwd_grad: perturb = 'activity' with model.dropout = {spec.dropout}; use dropout = 0")

    def setup(self) -> None:
        super().setup()  # the model draws first: same init as backprop
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        self.noise = torch.Generator(device=self.device).manual_seed(seed)  # tangents are drawn where they are used
        # torch.func.jvp imports its decompositions on first use (about 1 s in a fresh process):
        # pay that here, at construction, so it stays off the runner's training clock
        torch.func.jvp(torch.sin, (torch.zeros(1),), (torch.ones(1),))

    def _tangent(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.noise, device=like.device, dtype=like.dtype)

    def _weight_estimate(self, x: Tensor, y: Tensor) -> tuple[float, dict[str, Tensor]]:
        """(loss, (1/K) Σ_k (∇L·v_k) v_k over all parameters), K = tangents."""
        model = self._model
        primals = {name: p.detach() for name, p in model.named_parameters()}
        buffers = dict(model.named_buffers())

        def loss_of(weights: dict[str, Tensor]) -> Tensor:
            return F.cross_entropy(torch.func.functional_call(model, (weights, buffers), (x,)), y)

        estimate: dict[str, Tensor] = {}
        for k in range(self.params.tangents):
            v = {name: self._tangent(p) for name, p in primals.items()}
            loss, slope = torch.func.jvp(loss_of, (primals,), (v,))
            scale = slope / self.params.tangents
            for name, direction in v.items():  # the tangent's memory becomes the estimate
                if k == 0:
                    estimate[name] = direction.mul_(scale)
                else:
                    estimate[name].add_(direction.mul_(scale))
        return float(loss), estimate

    def _activity_estimate(self, x: Tensor, y: Tensor) -> tuple[float, dict[str, Tensor]]:
        """(loss, per-parameter estimate) from one forward-mode pass per layer's pre-activations."""
        children = list(self._model.named_children())
        points: list[tuple[str, list[nn.Module], Tensor, Tensor]] = []  # (layer, modules above it, input, s)
        with torch.no_grad():
            h = x
            for i, (name, module) in enumerate(children):
                out = module(h)
                if isinstance(module, nn.Linear):
                    points.append((name, [m for _, m in children[i + 1:]], h, out))
                h = out
            loss = float(F.cross_entropy(h, y))
        estimate: dict[str, Tensor] = {}
        for name, above, inp, pre in points:
            losses_from = per_example_losses(above, y)
            g = torch.zeros_like(pre)  # estimate of ∂ℓ_b/∂s_b, one row per example
            for _ in range(self.params.tangents):
                u = self._tangent(pre)
                _, slopes = torch.func.jvp(losses_from, (pre,), (u,))  # slopes[b] = ∂ℓ_b/∂s_b · u_b
                g.add_(slopes.unsqueeze(1) * u, alpha=1.0 / self.params.tangents)
            g /= x.shape[0]  # the loss is the batch mean
            estimate[f"{name}.weight"] = g.t() @ inp
            estimate[f"{name}.bias"] = g.sum(0)
        return loss, estimate

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self._model.train()
        if self.params.perturb == "weight":
            loss, estimate = self._weight_estimate(x, y)
        else:
            loss, estimate = self._activity_estimate(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        for name, p in self._model.named_parameters():
            p.grad = estimate[name]
        self.optimizer.step()
        # weight: one forward-mode pass per tangent; activity: the plain forward plus one pass per
        # tangent and layer (each counted as a whole forward, though it starts at its layer)
        if self.params.perturb == "weight":
            passes = self.params.tangents
        else:
            passes = 1 + self.params.tangents * (len(estimate) // 2)  # estimate: a weight and a bias per layer
        return StepOutput(loss=loss, forward_samples=x.shape[0] * passes)

    def exact_layers(self) -> frozenset[str]:
        """None: every layer's update is an estimate (overrides backprop's "all layers")."""
        return frozenset()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.noise.set_state(state["noise"])
