"""Forward-forward: every hidden layer learns to tell real from fake data by its own goodness.

Hinton (2022), "The Forward-Forward Algorithm: Some Preliminary Investigations", arXiv:2212.13345.

The hidden layers ``fc1 … fcH`` of the shared MLP (``learners.models.build_model``), each
followed by its activation f. The input is flattened; its first n_classes features are
overwritten by a label as one-hot × s, s = the largest training input value seen so far (1
before training; after one epoch, the training data's maximum).

One ``train_step`` (x, y in; one optimizer step out):

1. Positive data: x with its own label embedded; negative data: x with a uniformly drawn
   *wrong* label (``negatives = "random_label"``), as many as positives.
2. Each hidden layer l sees its input length-normalized, x̂ = ρ_l x/‖x‖ (ρ_l = ``norm_scale``,
   default √(input width), i.e. mean square 1), *detached* (no gradient crosses layers), and
   computes h_l = f(W_l x̂ + b_l) with goodness G_l = Σ_j h_lj².
3. Layer l's loss: softplus(θ_l − G_l) on positive and softplus(G_l − θ_l) on negative data
   (logistic loss of "is positive" with logit G_l − θ_l; θ_l = ``threshold``, default the layer
   width, i.e. mean square 1), averaged over the batch and summed over layers; one backward
   (local because of the detach) and one optimizer step on the hidden layers.

Prediction: for every class c, embed c and run the hidden layers; the class score is the total
goodness Σ_l G_l (n_classes forward passes per sample). ``predict`` returns these scores, so
the runner's "loss" for ff is the cross-entropy of a softmax over total goodness: a number on
its own scale, not comparable with other learners' losses.

The ``out`` layer that the shared model builder adds is not part of forward-forward: it is never
trained and plays no part in prediction. ``update_signal`` is the layer-local gradient of each
hidden layer and zero for ``out`` (its update). There is no network loss whose backprop gradient
the rule follows, so ``true_gradient`` raises ``NotMeasurable`` (the runner records the
alignment as n/a). Scale and threshold must be chosen together: unit-length inputs with
threshold = width leave every ReLU below threshold (accuracy .10), as does lr 1e-2 (dead ReLUs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bpbench.learners.backprop import BackpropParams, make_optimizer
from bpbench.learners.base import Learner, NotMeasurable, StepOutput
from bpbench.learners.models import ModelSpec, build_model, require_plain_mlp, weight_layers
from bpbench.learners.params import param
from bpbench.learners.pc import ACTIVATION


@dataclass(frozen=True)
class FFParams(BackpropParams):
    """BackpropParams (lr default 3e-3) plus threshold > 0 (None: each layer's width),
    norm_scale > 0 (None: √(each layer's input width)), negatives: random_label;
    normalize: length-normalize each hidden layer's input (False, a control: layers after the first
    see the layer below's raw activity, so its goodness passes up; the input is still normalized)."""

    lr: float = param(3e-3, gt=0)
    threshold: float | None = param(None, gt=0, unset="the layer width")
    norm_scale: float | None = param(None, gt=0, unset="√(input width)")
    negatives: Literal["random_label"] = "random_label"
    normalize: bool = True


class ForwardForward(Learner):
    """Forward-forward on the hidden layers; class scores are total goodness per label."""

    Params = FFParams
    params: FFParams
    model: nn.Sequential
    archs = frozenset({"mlp"})

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:  # run at study validation, before any run
        super().check_model(spec, params)
        require_plain_mlp(spec, "ff")
        if not spec.hidden:
            raise ValueError("model.hidden = []: ff trains hidden layers; give at least one hidden width")

    def setup(self) -> None:
        task, params, device = self.task, self.params, self.device
        n_inputs = math.prod(task.input_shape)
        if n_inputs <= task.n_classes:
            raise ValueError(
                f"input width {n_inputs}: ff embeds the label in the first {task.n_classes} "
                "features, so the input needs more features than classes"
            )
        self.model = build_model(self.model_spec, task.input_shape, task.n_classes, self.generator).to(device)
        self.hidden = [m for _, m in weight_layers(self.model)][:-1]
        self.names = [n for n, _ in weight_layers(self.model)]
        self.f = ACTIVATION[self.model_spec.activation]
        widths = [n_inputs, *self.model_spec.hidden]
        self.scale = [params.norm_scale or math.sqrt(w) for w in widths[:-1]]  # ρ_l per layer input
        self.threshold = [params.threshold or float(w) for w in widths[1:]]  # θ_l per layer
        self.optimizer = make_optimizer(params, [p for layer in self.hidden for p in layer.parameters()])
        self.label_scale = torch.ones((), device=device)  # s: largest training input seen (1 before training)
        self.goodness: list[tuple[Tensor, Tensor]] = []  # per layer: mean goodness of positive, negative data

    def embed(self, x: Tensor, labels: Tensor) -> Tensor:
        """Flattened x with its first n_classes features replaced by one-hot(labels) × s."""
        flat = x.flatten(1).clone()
        flat[:, : self.task.n_classes] = F.one_hot(labels, self.task.n_classes).to(flat.dtype) * self.label_scale
        return flat

    def layer_goodness(self, inp: Tensor, detach: bool) -> list[Tensor]:
        """Goodness G_l (per sample) of every hidden layer on embedded input ``inp``."""
        out = []
        for i, (layer, rho) in enumerate(zip(self.hidden, self.scale)):
            h = self.f(layer(F.normalize(inp, dim=1) * rho if i == 0 or self.params.normalize else inp))
            out.append(h.square().sum(dim=1))
            inp = h.detach() if detach else h
        return out

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        """x: (B, *input_shape), y: (B,) labels; 2B forward samples (positive and negative)."""
        self.label_scale = torch.maximum(self.label_scale, x.max().detach())
        shift = torch.randint(1, self.task.n_classes, y.shape, generator=self.generator).to(y.device)
        wrong = (y + shift) % self.task.n_classes
        n = x.shape[0]
        data = torch.cat([self.embed(x, y), self.embed(x, wrong)])
        self.optimizer.zero_grad(set_to_none=True)
        loss = x.new_zeros(())
        self.goodness = []
        for g, theta in zip(self.layer_goodness(data, detach=True), self.threshold):
            pos, neg = g[:n], g[n:]
            loss = loss + F.softplus(theta - pos).mean() + F.softplus(neg - theta).mean()
            self.goodness.append((pos.detach().mean(), neg.detach().mean()))
        loss.backward()
        self.optimizer.step()
        return StepOutput(loss=loss.item(), forward_samples=2 * n)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Total goodness (B, n_classes) of x with each label embedded."""
        labels = torch.arange(self.task.n_classes, device=x.device)
        scores = [
            torch.stack(self.layer_goodness(self.embed(x, labels[c].expand(x.shape[0])), detach=True)).sum(0)
            for c in range(self.task.n_classes)
        ]
        return torch.stack(scores, dim=1)

    def update_signal(self) -> dict[str, Tensor]:
        """Layer-local goodness-loss gradient of each hidden layer; zero for ``out`` (never trained)."""
        signal = {
            n: m.weight.grad.detach().clone() for n, m in zip(self.names, self.hidden) if m.weight.grad is not None
        }
        out = self.model.get_submodule(self.names[-1])
        assert isinstance(out, nn.Linear)
        return {**signal, self.names[-1]: torch.zeros_like(out.weight)}

    def true_gradient(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        raise NotMeasurable(
            "forward-forward minimizes a goodness loss per layer, not a network loss: "
            "there is no backprop gradient it approximates"
        )

    def diagnostics(self) -> list[tuple[str, str, float]]:
        """Mean goodness of positive and negative data per hidden layer, on the last step's batch."""
        rows = []
        for name, (pos, neg) in zip(self.names, self.goodness):
            rows += [("ff_goodness_pos", name, float(pos)), ("ff_goodness_neg", name, float(neg))]
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "label_scale": self.label_scale.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.label_scale = state["label_scale"].clone().to(self.device)
