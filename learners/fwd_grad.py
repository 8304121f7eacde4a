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

FLOPs (what the runner's ``torch.utils.flop_counter`` counts is what an efficient implementation
needs; ``docs/flops.md`` has every learner's count):
- weight: the first connection layer's input x is data, so its tangent is identically zero; the
  first layer is run outside the jvp, as its primal product x·W₁ᵀ and its tangent x·V₁ᵀ, and one
  ``torch.func.jvp`` takes the rest of the network from there (primal plus the two tangent
  products ẋ·Wᵀ and x·Vᵀ per layer). Total per tangent: 2 forwards less nothing, i.e. exactly
  backprop's forward + backward count (backprop's backward also skips the first layer's dx).
  (A single jvp over the whole network would also multiply x's zero tangent by W₁: counted but
  not needed.)
- activity: one forward pass keeps every layer's input; for each perturbed layer the tangent
  u_l is pushed up by hand with the stored primal values (a Linear above: u·Wᵀ; an activation
  or the per-example loss: its own ``torch.func.jvp`` at the stored input, element-wise), so no
  forward is recomputed and no product with a zero weight tangent is made; then one outer
  product per layer for the weight estimate, as backprop's weight gradient.

Model support: no batch norm (a jvp cannot update running statistics in place); the activity
variant also needs an MLP without dropout (each per-layer pass must see the same network).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import NotMeasurable, StepOutput
from bpbench.learners.models import PLAIN_ARCHS, ModelSpec
from bpbench.learners.params import param

PERTURB = ("weight", "activity")


def jvp(func: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
    """``torch.func.jvp(func, primals, tangents)``: (output, its jvp). torch annotates the result
    as either that pair or the has_aux triple, so unpacking it as a pair needs this narrowing."""
    return torch.func.jvp(func, primals, tangents)  # type: ignore[return-value]


def loss_slopes(above: list[nn.Module], inputs: list[Tensor], logits: Tensor, y: Tensor, u: Tensor) -> Tensor:
    """(B,) directional derivatives ∂ℓ_b/∂s_b · u_b of each example's cross-entropy ℓ_b.

    above: the modules after the perturbed layer; inputs: what each received in the forward pass
    (stored primal values); logits: the network's output; u: (B, n) tangent at the layer's output s.
    A Linear above carries the tangent as u·Wᵀ (its bias has no tangent); every other module
    and the loss by ``torch.func.jvp`` at its stored input: no primal product is recomputed."""
    t = u
    for module, inp in zip(above, inputs):
        if isinstance(module, nn.Linear):
            t = t @ module.weight.t()
        else:
            _, t = jvp(module, (inp,), (t,))
    _, slopes = jvp(lambda z: F.cross_entropy(z, y, reduction="none"), (logits,), (t,))
    return slopes


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
    archs = PLAIN_ARCHS  # no batch norm under a jvp, and ResNets have it in every block

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:  # run at study validation, before any run
        super().check_model(spec, params)
        perturb = (params or cls.Params()).perturb
        if spec.batchnorm:
            raise ValueError(
                "fwd_grad: model.batchnorm = true is not supported "
                "(a jvp cannot update running statistics); use batchnorm = false"
            )
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

    def _split_first_layer(self) -> tuple[list[nn.Module], nn.Module, str, nn.Sequential]:
        """(parameter-free modules before the first connection layer, that layer, its name, the rest)."""
        children = list(self.model.named_children())
        first = next(i for i, (_, m) in enumerate(children) if isinstance(m, (nn.Linear, nn.Conv2d)))
        before = [m for _, m in children[:first]]
        name, layer = children[first]
        return before, layer, name, nn.Sequential(OrderedDict(children[first + 1 :]))

    def _weight_estimate(self, x: Tensor, y: Tensor) -> tuple[float, dict[str, Tensor]]:
        """(loss, (1/K) Σ_k (∇L·v_k) v_k over all parameters), K = tangents.

        The first connection layer runs outside the jvp (its input has no tangent): s = x·W₁ᵀ + b₁
        and ṡ = x·V₁ᵀ + ḃ₁; one jvp over the rest of the network from (s, ṡ)."""
        model = self.model
        primals = {name: p.detach() for name, p in model.named_parameters()}
        buffers = dict(model.named_buffers())
        before, layer, first, rest = self._split_first_layer()
        h = x
        for module in before:
            h = module(h)
        own = {k: f"{first}.{k}" for k, _ in layer.named_parameters()}
        with torch.no_grad():
            s = torch.func.functional_call(layer, {k: primals[v] for k, v in own.items()}, (h,))
        rest_names = [name for name in primals if name.split(".")[0] != first]

        def loss_of(pre: Tensor, weights: dict[str, Tensor]) -> Tensor:
            return F.cross_entropy(torch.func.functional_call(rest, (weights, buffers), (pre,)), y)

        estimate: dict[str, Tensor] = {}
        for k in range(self.params.tangents):
            v = {name: self._tangent(p) for name, p in primals.items()}
            with torch.no_grad():  # the first layer's tangent: linear in its weights, x has none
                s_dot = torch.func.functional_call(layer, {k_: v[name] for k_, name in own.items()}, (h,))
            loss, slope = jvp(loss_of, (s, {n: primals[n] for n in rest_names}), (s_dot, {n: v[n] for n in rest_names}))
            scale = slope / self.params.tangents
            for name, direction in v.items():  # the tangent's memory becomes the estimate
                if k == 0:
                    estimate[name] = direction.mul_(scale)
                else:
                    estimate[name].add_(direction.mul_(scale))
        return float(loss), estimate

    def _activity_estimate(self, x: Tensor, y: Tensor) -> tuple[float, dict[str, Tensor]]:
        """(loss, per-parameter estimate): one forward pass keeping every module's input, then per
        layer its tangents pushed up through the stored primal values (no forward recomputed)."""
        children = [m for _, m in self.model.named_children()]
        names = [n for n, _ in self.model.named_children()]
        inputs: list[Tensor] = []  # inputs[i]: what children[i] received
        with torch.no_grad():
            h = x
            for module in children:
                inputs.append(h)
                h = module(h)
        logits = h
        loss = float(F.cross_entropy(logits, y))
        estimate: dict[str, Tensor] = {}
        for i, module in enumerate(children):
            if not isinstance(module, nn.Linear):
                continue
            pre = inputs[i + 1] if i + 1 < len(children) else logits  # this layer's pre-activations s
            g = torch.zeros_like(pre)  # estimate of ∂ℓ_b/∂s_b, one row per example
            for _ in range(self.params.tangents):
                u = self._tangent(pre)
                slopes = loss_slopes(children[i + 1 :], inputs[i + 1 :], logits, y, u)  # ∂ℓ_b/∂s_b · u_b
                g.add_(slopes.unsqueeze(1) * u, alpha=1.0 / self.params.tangents)
            g /= x.shape[0]  # the loss is the batch mean
            estimate[f"{names[i]}.weight"] = g.t() @ inputs[i]
            estimate[f"{names[i]}.bias"] = g.sum(0)
        return loss, estimate

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.model.train()
        if self.params.perturb == "weight":
            loss, estimate = self._weight_estimate(x, y)
        else:
            loss, estimate = self._activity_estimate(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        for name, p in self.model.named_parameters():
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

    def check_norm_ratio(self) -> None:
        """Weight perturbation: layer l's estimate is <g, v> v_l with one tangent v over all weights,
        so its norm is |<g, v>| ||v_l||, and ||v_l|| ~ sqrt(layer l's parameter count) whatever the
        gradient: the first/last ratio is sqrt(first / last parameter counts), n/a here."""
        if self.params.perturb == "weight":
            raise NotMeasurable(
                "weight perturbation: each layer's estimate is <g, v> v_l (averaged over tangents), so the "
                "first/last norm ratio is about sqrt(first / last layer's parameter count), a property of the "
                "estimator, not of the gradient"
            )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.noise.set_state(state["noise"])
