"""Predictive coding (discriminative): each layer learns from its own prediction error only.

Whittington & Bogacz (2017), "An approximation of the error backpropagation algorithm in a
predictive coding network with local Hebbian synaptic plasticity", Neural Computation 29(5).
Song, Lukasiewicz, Xu & Bogacz (2020), "Can the brain do backpropagation? Exact
implementation of backpropagation in predictive coding networks", NeurIPS 2020.

The shared MLP ``fc1 … fcH, out`` (``learners.models.build_model``) with activation f. Each
hidden layer l has value nodes v_l (its pre-activation), a_l = f(v_l), a_0 = the flattened
input (clamped). Layer l predicts mu_l = W_l a_{l-1} + b_l; its error is ε_l = v_l − mu_l. The
output is clamped to the target through the top loss ℓ, with error ε_out = −∂ℓ/∂mu_out
(``top_loss = "ce"``: onehot(y) − softmax(mu_out); ``"mse"``: onehot(y) − mu_out). Energy of
one sample::

    E = Σ_l ½‖ε_l‖² + ℓ(mu_out, y)

One ``train_step`` (x, y in; one optimizer step out):

1. v_l ← mu_l by a feedforward pass (every hidden error 0; E = ℓ of the plain network).
2. Inference, ``inference_steps`` (T) times, all layers at once, inference rate γ (``gamma``)::

       v_l ← v_l − γ ∂E/∂v_l,   ∂E/∂v_l = ε_l − f′(v_l) ⊙ (ε_{l+1} W_{l+1})

3. Learning: ∂E/∂W_l = −ε_l a_{l−1}ᵀ (and ∂E/∂b_l = −ε_l), averaged over the batch, is handed to
   the optimizer as the gradient: each weight changes from its own layer's error and input.

Relation to backprop: one inference step from the feedforward state gives ε_H = −γ δ_H
(δ: backprop's error at layer H's pre-activation); at equilibrium (γT large, small errors)
ε_l ≈ −δ_l in every layer, so ∂E/∂W_l approaches the backprop gradient (Whittington & Bogacz
2017). With the defaults (T = 8, γ = .1) inference is partial: deeper layers get a damped but
well-aligned error. The output layer's update is the loss gradient at the *relaxed* activity
a_H, not the feedforward one, so with hidden layers no layer equals the true gradient by
construction (``exact_layers()`` is empty); the runner's cosine shows how close each layer is.

``top_loss = "mse"`` trains with a squared error at the top: compare it with backprop trained
on a squared error too (``backprop`` with ``loss = "mse"``, the same ½‖z − onehot(y)‖²; not
cross-entropy backprop: the loss alone changes accuracy). ``objective`` declares the top loss, so
``true_gradient`` (and the alignment and projection columns) use that loss's gradient.
Prediction is the feedforward pass (the energy minimum with the output left free).
MLP only, without batch norm or dropout (each would change the energy between inference steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.learners.backprop import BackpropParams, make_optimizer
from bpbench.learners.base import Learner, StepOutput
from bpbench.learners.losses import top_loss
from bpbench.learners.models import ModelSpec, build_model, require_plain_mlp, weight_layers
from bpbench.learners.params import param

# activation f and its derivative f'(v) written from (v, a = f(v))
ACTIVATION: dict[str, Callable[[Tensor], Tensor]] = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
DERIVATIVE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "relu": lambda v, a: (v > 0).to(v.dtype),
    "tanh": lambda v, a: 1 - a * a,
    "sigmoid": lambda v, a: a * (1 - a),
}


@dataclass(frozen=True)
class PCParams(BackpropParams):
    """BackpropParams plus inference_steps T >= 1, inference rate gamma > 0, top_loss ce | mse."""

    inference_steps: int = param(8, ge=1)
    gamma: float = param(0.1, gt=0)
    top_loss: Literal["ce", "mse"] = "ce"


class PredictiveCoding(Learner):
    """Discriminative predictive coding; ``update_signal`` is ∂E/∂W per layer after inference."""

    Params = PCParams
    params: PCParams
    model: nn.Sequential
    archs = frozenset({"mlp"})

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:  # run at study validation, before any run
        super().check_model(spec, params)
        require_plain_mlp(spec, "pc")

    def setup(self) -> None:
        self.model = build_model(self.model_spec, self.task.input_shape, self.task.n_classes, self.generator).to(
            self.device
        )
        self.layers = [m for _, m in weight_layers(self.model)]  # fc1 … fcH, out
        self.optimizer = make_optimizer(self.params, self.model.parameters())
        self.f, self.df = ACTIVATION[self.model_spec.activation], DERIVATIVE[self.model_spec.activation]
        self.energy: tuple[Tensor, Tensor] | None = None  # mean energy per sample, first and last inference step

    def _top_error(self, logits: Tensor, target: Tensor) -> Tensor:
        """ε_out = −∂ℓ/∂logits per sample."""
        return target - (logits.softmax(dim=1) if self.params.top_loss == "ce" else logits)

    def _energy(self, eps: list[Tensor], logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
        """Mean energy per sample: ½ Σ‖ε_l‖² + ℓ."""
        top = (
            F.cross_entropy(logits, y, reduction="sum")
            if self.params.top_loss == "ce"
            else 0.5 * (logits - target).square().sum()
        )
        return (sum(0.5 * e.square().sum() for e in eps) + top) / y.shape[0]

    @torch.no_grad()
    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        """x: (B, *input_shape), y: (B,) labels; one feedforward pass, T inference steps, one update.

        Reports the feedforward network's top loss on the batch (before inference and update)."""
        gamma, hidden, out = self.params.gamma, self.layers[:-1], self.layers[-1]
        target = F.one_hot(y, self.task.n_classes).to(x.dtype)
        a = [x.flatten(1)]  # a_0 = input, then a_l = f(v_l)
        v: list[Tensor] = []
        for layer in hidden:  # 1. feedforward: v_l = mu_l
            v.append(F.linear(a[-1], layer.weight, layer.bias))
            a.append(self.f(v[-1]))
        mu = list(v)  # predictions; mu_1 = W_1 x never changes (the input is clamped)
        logits = F.linear(a[-1], out.weight, out.bias)
        eps = [torch.zeros_like(t) for t in v]
        first = self._energy([], logits, y, target)  # every hidden error is 0: the network's top loss
        v = [t.clone() for t in v]
        top = len(hidden) - 1
        for t in range(self.params.inference_steps):  # 2. inference on the hidden value nodes
            above = self._top_error(logits, target)
            for k in reversed(range(len(hidden))):
                if t == 0 and k < top:
                    break  # hidden errors start at 0: the first step moves only the top hidden layer
                grad_v = torch.addcmul(eps[k], self.df(v[k], a[k + 1]), above @ self.layers[k + 1].weight, value=-1)
                above = eps[k]
                v[k].sub_(grad_v, alpha=gamma)
            for k, layer in enumerate(hidden):
                a[k + 1] = self.f(v[k])
                if k > 0:
                    mu[k] = F.linear(a[k], layer.weight, layer.bias)
                eps[k] = v[k] - mu[k]
            logits = F.linear(a[-1], out.weight, out.bias)
        self.energy = (first, self._energy(eps, logits, y, target))
        errors = [*eps, self._top_error(logits, target)]
        n = x.shape[0]
        for layer, e, inp in zip(self.layers, errors, a):  # 3. local learning: ∂E/∂W_l = −ε_l a_{l−1}ᵀ
            layer.weight.grad = (e.t() @ inp).mul_(-1 / n)
            layer.bias.grad = e.sum(0).mul_(-1 / n)
        self.optimizer.step()
        return StepOutput(loss=float(first), forward_samples=n)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Feedforward logits (B, n_classes)."""
        return self.model(x)

    def update_signal(self) -> dict[str, Tensor]:
        return {n: m.weight.grad.detach().clone() for n, m in weight_layers(self.model) if m.weight.grad is not None}

    def objective(self, logits: Tensor, y: Tensor) -> Tensor:
        """The top loss it trains (``top_loss``): ``true_gradient`` is that loss's gradient, so
        pc with "mse" is compared with the squared-error gradient, not cross-entropy's."""
        return top_loss(logits, y, self.params.top_loss)

    def exact_layers(self) -> frozenset[str]:
        """None with hidden layers (see the module docstring). A linear model (no hidden layer) has
        nothing to relax: its update is the exact gradient of its top loss."""
        if self.model_spec.hidden:
            return frozenset()
        return frozenset(n for n, _ in weight_layers(self.model))

    def diagnostics(self) -> list[tuple[str, str, float]]:
        """Mean energy per sample before inference (the feedforward state) and after the last step."""
        if self.energy is None:
            return []
        return [("pc_energy_first", "", float(self.energy[0])), ("pc_energy_last", "", float(self.energy[1]))]

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
