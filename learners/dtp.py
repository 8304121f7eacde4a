"""Difference target propagation (Lee et al. 2015), in the two forms Bartunov et al. (2018) assessed.

The shared MLP computes h_l = f_l(h_{l-1}) = act(W_l h_{l-1} + b_l) for hidden layers l = 1..L
(h_0 = the flattened input) and logits z = W_out h_L + b_out. Instead of a backward pass, every
hidden layer gets a *target* ĥ_l and moves toward it with a local loss; targets travel down
through learned approximate inverses g_l(h_l) ≈ h_{l-1} with Lee's difference correction

    ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) − g_l(h_l),

which cancels the inverse's reconstruction error at the current point (if ĥ_l = h_l, then
ĥ_{l-1} = h_{l-1} exactly, however imperfect g_l is).

One ``train_step`` = one minibatch:

1. forward pass; each layer's input is detached, so no gradient ever crosses a layer;
2. one optimizer step of every inverse g_l(h) = act(V_l h + c_l) on its noise-corrupted
   reconstruction loss ½‖g_l(f_l(h̃)) − h̃‖², h̃ = h_{l-1} + noise·ε, ε ~ N(0, I) (Lee's
   regularized inverse; the forward weights are not trained by it);
3. the top target, a step of size ``target_step`` on the per-example cross-entropy ℓ,
   whose output error is e = ∂ℓ/∂z = softmax(z) − onehot(y):
   - ``penultimate = "gradient"`` (Lee's DTP): ĥ_L = h_L − target_step · e W_out, the
     loss gradient through the output layer only (this uses W_outᵀ: weight transport at the
     top, as Bartunov et al. point out);
   - ``penultimate = "target"`` (Bartunov et al.'s weight-transport-free direction): ẑ =
     z − target_step · e, and ĥ_L = h_L + g_out(ẑ) − g_out(z) through a learned inverse of the
     output layer too: no gradient reaches any hidden layer;
4. targets down to ĥ_1 by the difference correction, with the inverses just updated;
5. one optimizer step of the forward weights on the local losses: hidden layer l:
   ‖h_l − ĥ_l‖² / (2 · target_step), averaged over the batch; output layer: the mean
   cross-entropy (its update uses only its own input and the output error).

The division by ``target_step`` makes the local update independent of the step's size to
first order, and exact where it can be: with ``penultimate = "gradient"`` the last hidden
layer's local gradient is J_fᵀ (h_L − ĥ_L) / target_step = J_fᵀ ∂ℓ/∂h_L, i.e. the true
gradient. So ``exact_layers`` is {"out"} for "target" and {"out", "fc<L>"} for "gradient"
(with one hidden layer, "gradient" DTP is backprop). ``update_signal`` = the local
forward-weight gradients (before the optimizer); ``diagnostics`` = each inverse's relative
reconstruction error ‖g_l(f_l(h)) − h‖² / ‖h‖² on the last batch (no noise).

``forward_samples`` counts the batch's one forward pass through the network; the inverses'
reconstructions re-run the layers above the first on noisy inputs, which the FLOP counter sees.

MLP only, without batch norm or dropout (a forward layer must be a pure function of its
input for its inverse to be learnable and its target to be meaningful); Lee et al. and
Bartunov et al. use tanh, and the study does too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.learners.backprop import Backprop, BackpropParams, make_optimizer
from bpbench.learners.base import NotMeasurable, StepOutput
from bpbench.learners.models import ACTIVATIONS, ModelSpec, require_plain_mlp
from bpbench.learners.params import param

PENULTIMATE = ("gradient", "target")


@dataclass(frozen=True)
class DTPParams(BackpropParams):
    """BackpropParams (for the forward weights) plus:
    penultimate: "gradient" (Lee's DTP) | "target" (every hidden target through an inverse);
    target_step > 0: size of the top target's step on the cross-entropy;
    noise >= 0: std of the Gaussian corruption in the inverses' reconstruction loss;
    inverse_lr > 0: learning rate of the inverses (same optimizer kind, no weight decay);
    freeze_propagated: a control: the hidden layers whose target comes through a learned inverse
    (fc1..fc<L-1> for "gradient", every hidden layer for "target") keep their initial weights, so
    a run shows how much the propagated targets contribute (the inverses still train)."""

    penultimate: Literal["gradient", "target"] = "gradient"
    target_step: float = param(0.1, gt=0)
    noise: float = param(0.1, ge=0)
    inverse_lr: float = param(1e-3, gt=0)
    freeze_propagated: bool = False


def layer_blocks(model: nn.Sequential) -> list[tuple[str, list[nn.Module]]]:
    """The shared MLP as (connection layer name, [that layer, the modules after it up to the next one])."""
    blocks: list[tuple[str, list[nn.Module]]] = []
    for name, module in model.named_children():
        if isinstance(module, nn.Linear):
            blocks.append((name, [module]))
        elif blocks:
            blocks[-1][1].append(module)
    return blocks


def run_block(modules: list[nn.Module], h: Tensor) -> Tensor:
    """One block's forward: f_l(h)."""
    for module in modules:
        h = module(h)
    return h


class DifferenceTargetPropagation(Backprop):
    """Local losses toward targets propagated by learned inverses (no backward pass across layers)."""

    Params = DTPParams
    params: DTPParams
    archs = frozenset({"mlp"})

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:  # run at study validation, before any run
        super().check_model(spec, params)
        require_plain_mlp(spec, "dtp")
        if not spec.hidden:
            raise ValueError("dtp: model.hidden = []: difference target propagation needs at least one hidden layer")

    def setup(self) -> None:
        super().setup()  # the model draws first: same init as backprop
        params, generator, device = self.params, self.generator, self.device
        self.blocks = layer_blocks(self.model)
        # g_l for every layer whose input is a hidden layer: fc2..fc<L>, and the output layer in "target" mode
        inverted = self.blocks[1:] if params.penultimate == "target" else self.blocks[1:-1]
        self.inverses = nn.ModuleDict()
        for name, modules in inverted:
            layer = cast(nn.Linear, modules[0])  # layer_blocks: each block starts at its Linear
            inverse = nn.Linear(layer.out_features, layer.in_features)
            nn.init.kaiming_uniform_(inverse.weight, a=math.sqrt(5), generator=generator)
            nn.init.zeros_(inverse.bias)
            self.inverses[name] = nn.Sequential(inverse, ACTIVATIONS[self.model_spec.activation]())
        self.inverses.to(device)
        # mypy sees BackpropParams (imported as bpbench.*) as Any, so not its lr and weight_decay fields
        inverse_params = dataclasses.replace(params, lr=params.inverse_lr, weight_decay=0.0)  # type: ignore[call-arg]
        # none with one hidden layer and penultimate = "gradient": then there is nothing to invert
        self.inverse_optimizer = make_optimizer(inverse_params, self.inverses.parameters()) if self.inverses else None
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        self.noise = torch.Generator(device=device).manual_seed(seed)  # drawn where it is used
        self._last_x: Tensor | None = None

    def _forward(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(input h_{l-1}, output h_l) of every block; inputs detached, outputs with their own layer's graph."""
        inputs, outputs = {}, {}
        h = self.model.flatten(x)
        for name, modules in self.blocks:
            inputs[name] = h.detach()
            outputs[name] = h = run_block(modules, inputs[name])
        return inputs, outputs

    def _train_inverses(self, inputs: dict[str, Tensor]) -> None:
        """One optimizer step of every inverse on ½‖g(f(h̃)) − h̃‖², h̃ = h + noise·ε."""
        if self.inverse_optimizer is None:
            return
        blocks = dict(self.blocks)
        loss = torch.zeros((), device=self.device)
        for name, inverse in self.inverses.items():
            h = inputs[name]
            noisy = h + self.params.noise * torch.randn(h.shape, generator=self.noise, device=h.device, dtype=h.dtype)
            with torch.no_grad():
                f = run_block(blocks[name], noisy)
            loss = loss + 0.5 * (inverse(f) - noisy).pow(2).sum(1).mean()
        self.inverse_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.inverse_optimizer.step()

    @torch.no_grad()
    def _targets(self, outputs: dict[str, Tensor], y: Tensor) -> dict[str, Tensor]:
        """ĥ_l for every hidden layer, from the top target down by the difference correction."""
        names = [name for name, _ in self.blocks]
        z, step = outputs["out"], self.params.target_step
        error = torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)  # ∂ℓ/∂z per example
        top = names[-2]  # the last hidden layer
        h = outputs[top]
        if self.params.penultimate == "gradient":
            targets = {top: h - step * error @ self.model.out.weight}
        else:
            g = self.inverses["out"]
            targets = {top: h + g(z - step * error) - g(z)}
        for upper, lower in zip(reversed(names[1:-1]), reversed(names[:-2])):
            g = self.inverses[upper]
            targets[lower] = outputs[lower] + g(targets[upper]) - g(outputs[upper])
        return targets

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        self.model.train()
        inputs, outputs = self._forward(x)
        self._train_inverses(inputs)
        targets = self._targets(outputs, y)
        if self.params.freeze_propagated:  # the control: no local loss, so no update, for propagated layers
            targets = {n: t for n, t in targets.items() if n not in self.propagated_layers()}
        loss = F.cross_entropy(outputs["out"], y)
        local = loss + sum(
            ((outputs[n] - t).pow(2).sum(1).mean() / (2 * self.params.target_step) for n, t in targets.items()),
            torch.zeros((), device=self.device),
        )
        self.optimizer.zero_grad(set_to_none=True)
        local.backward()  # inputs are detached: each layer gets only its own local loss's gradient
        self.optimizer.step()
        self._last_x = x
        return StepOutput(loss=loss.item(), forward_samples=x.shape[0])

    def propagated_layers(self) -> frozenset[str]:
        """Hidden layers whose target reaches them through a learned inverse (see freeze_propagated)."""
        hidden = [name for name, _ in self.blocks][:-1]
        return frozenset(hidden[:-1] if self.params.penultimate == "gradient" else hidden)

    def exact_layers(self) -> frozenset[str]:
        names = [name for name, _ in self.blocks]
        return frozenset({"out", names[-2]} if self.params.penultimate == "gradient" else {"out"})

    @torch.no_grad()
    def reconstruction_errors(self, x: Tensor) -> dict[str, float]:
        """Per inverse (keyed by the layer it inverts): ‖g_l(f_l(h)) − h‖² / ‖h‖² over the
        batch, h = that layer's input when the network sees x (no noise, no state change)."""
        inputs, _ = self._forward(x)
        blocks = dict(self.blocks)
        return {
            name: float(
                (inverse(run_block(blocks[name], inputs[name])) - inputs[name]).pow(2).sum() / inputs[name].pow(2).sum()
            )
            for name, inverse in self.inverses.items()
        }

    def diagnostics(self) -> list[tuple[str, str, float]]:
        """Each inverse's relative reconstruction error on the last training batch."""
        if self._last_x is None:
            raise NotMeasurable("dtp: no training step taken yet, so no batch to reconstruct")
        return [
            ("inverse_reconstruction_error", name, value)
            for name, value in self.reconstruction_errors(self._last_x).items()
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "inverses": self.inverses.state_dict(),
            "inverse_optimizer": None if self.inverse_optimizer is None else self.inverse_optimizer.state_dict(),
            "noise": self.noise.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.inverses.load_state_dict(state["inverses"])
        if self.inverse_optimizer is not None:
            self.inverse_optimizer.load_state_dict(state["inverse_optimizer"])
        self.noise.set_state(state["noise"])
