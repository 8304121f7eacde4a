"""Spiking network trained without backpropagation through time or through layers.

The rule is e-prop with random broadcast feedback ("random e-prop", Bellec et al.,
Nature Communications 2020), i.e. direct feedback alignment (Nøkland 2016) with local
eligibility traces. After a forward pass over T steps (no autograd graph):

    e          = softmax(scores) - onehot(y), / B        output error (mean cross-entropy)
    E[t]       = e / T                  (membrane readout: scores = mean output membrane)
               = e * psi_out[t]         (spikes readout: scores = output spike counts)
                                                         error at the output neurons at step t
    L_l[t]     = B_l E[t]                                learning signal of hidden layer l
                                                         (B_l fixed random; output layer: E[t])
    psi_j[t]   = surrogate derivative at U_j[t] - threshold   (snntorch's spike_grad)
    eps_i[t]   = beta * eps_i[t-1] + x_i[t]               presynaptic trace
    ebar_ji[t] = kappa * ebar_ji[t-1] + psi_j[t] eps_i[t] eligibility trace, low-pass filtered
                                                         by the readout's own filter (kappa =
                                                         the output neurons' beta)
    dW_ji      = sum_t L_j[t] ebar_ji[t]                  (conv: the same, summed over positions)
    output layer: dW_ji = sum_t E_j[t] eps_i[t]          (its inputs drive the readout directly)

eps is the exact derivative of the membrane with respect to the weight when resets are
ignored (snntorch detaches the reset), and the filter kappa with the 1/T of the membrane
readout is exactly how a hidden spike at step k reaches the scores, so with one hidden
layer and B = W_out^T this rule *is* the BPTT surrogate gradient (any encoding, either
readout; tested). With random B, or more hidden layers (BPTT then also runs through the
upper layers' membranes), it is an approximation. Each update needs only quantities local
to the synapse plus a broadcast error: nothing is propagated back through the weights.
(Computed as sum_k psi[k] eps[k] * sum_{t>=k} kappa^(t-k) L[t], the same sum reordered.)
Why this rule: it is the spiking member of the feedback-alignment family already in
bpbench (fa, dfa), and unlike BPTT it could run online on neuromorphic hardware. The
output layer's update is its exact gradient. The optimizer (Adam by default) follows dW.
``true_gradient`` is the BPTT surrogate gradient, so gradient alignment measures how
far this rule is from snn_bptt's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import snntorch as snn
import torch
import torch.nn.functional as F
import torch.nn.grad
from torch import Tensor, nn

from bpbench.learners.base import StepOutput
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.learners.spiking import SpikingLearner, SpikingParams, Trace


@dataclass(frozen=True)
class SpikingDFAParams(SpikingParams):
    """As SpikingParams; beta cannot be learned (the rule has no update for it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.learn_beta:  # an option this rule cannot run, not a range
            raise ValueError("learn_beta = true: snn_dfa has no learning rule for beta; use learn_beta = false")


def surrogate_derivative(neuron: snn.SpikingNeuron, membrane: Tensor) -> Tensor:
    """d spike / d membrane of ``neuron``'s own surrogate at each recorded membrane value."""
    with torch.enable_grad():
        v = (membrane - neuron.threshold).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(neuron.spike_grad(v).sum(), v)
    return grad


def readout_filtered(error: Tensor, kappa: float) -> Tensor:
    """sum_{t>=k} kappa^(t-k) error[t] for every k: error (T, ...) -> (T, ...).

    The readout's low-pass filter applied to a learning signal; summing it against
    ``psi[k] eps[k]`` equals summing the signal against the filtered eligibility trace.
    """
    out, acc = torch.empty_like(error), torch.zeros_like(error[0])
    for t in range(error.shape[0] - 1, -1, -1):
        acc = kappa * acc + error[t]
        out[t] = acc
    return out


def local_gradient(
    layer: nn.Linear | nn.Conv2d, inputs: Tensor, constant: bool, delta: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """(weight, bias) update sum_t delta[t] x eps[t] of one layer.

    inputs: (B, ...) fed at every step if ``constant``, else (T, B, ...); delta: (T, B, ...)
    = learning signal x surrogate derivative of the layer's neurons.
    """
    steps = delta.shape[0]
    decay = beta ** torch.arange(steps, dtype=delta.dtype, device=delta.device)
    gain = torch.cumsum(decay, 0)  # trace of a constant input 1: sum_{k<=t} beta^k
    bias_delta = torch.einsum("t,tb...->b...", gain, delta)
    if constant:  # eps[t] = gain[t] * x: fold the gains into delta
        x, d = inputs, bias_delta
    else:
        traces, eps = [], torch.zeros_like(inputs[0])
        for t in range(steps):
            eps = beta * eps + inputs[t]
            traces.append(eps)
        x, d = torch.stack(traces).flatten(0, 1), delta.flatten(0, 1)
    if isinstance(layer, nn.Linear):
        grad_w = d.reshape(-1, layer.out_features).T @ x.reshape(-1, layer.in_features)
    else:
        grad_w = torch.nn.grad.conv2d_weight(
            x, layer.weight.shape, d, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    grad_b = bias_delta.sum(0) if bias_delta.dim() == 2 else bias_delta.sum((0, 2, 3))
    return grad_w, grad_b


class SpikingDFA(SpikingLearner):
    """Random e-prop / spiking DFA; ``update_signal`` is the pseudo-gradient dW per layer."""

    Params = SpikingDFAParams
    params: SpikingDFAParams

    @classmethod
    def check_model(cls, spec: ModelSpec, params: Any = None) -> None:
        super().check_model(spec, params)
        if spec.batchnorm:
            raise ValueError(
                "model.batchnorm = true: snn_dfa's local rule has no batch-norm update; use batchnorm = false"
            )

    def setup(self) -> None:
        super().setup()
        trace = Trace()  # one dry run to learn each hidden layer's neuron shape
        self.simulate_eval(torch.zeros(1, *self.task.input_shape, device=self.device), trace)
        n = self.task.n_classes
        self.feedback = {
            name: (torch.randn(math.prod(s.shape[2:]), n, generator=self.generator) / math.sqrt(n)).to(self.device)
            for name, s in trace.spikes.items()
            if name != "out"
        }
        self.layer_neurons = dict(self.net.neurons)

    def train_step(self, x: Tensor, y: Tensor) -> StepOutput:
        """x: (B, C, H, W) images or (B, T, F) speech; one forward sample per example."""
        self.model.train()
        trace = Trace()
        with torch.no_grad():
            scores = self.net(self.train_input(x), trace)
            loss = F.cross_entropy(scores, y)
            error = (scores.softmax(1) - F.one_hot(y, scores.shape[1]).to(scores.dtype)) / x.shape[0]
        steps = next(iter(trace.spikes.values())).shape[0]
        readout = self.layer_neurons["out"]
        if self.params.readout == "membrane":  # scores = mean membrane: each step's membrane carries 1/T
            out_error = (error / steps).expand(steps, *error.shape)
        else:  # scores = spike counts: each step's spike, through the output neurons' surrogate
            out_error = error * surrogate_derivative(readout, trace.membranes["out"])
        filtered = readout_filtered(out_error, float(readout.beta.clamp(0, 1)))  # (T, B, n_classes)
        for name, layer in weight_layers(self.model):
            neuron = self.layer_neurons[name]
            if name == "out":
                delta = out_error
            else:
                psi = surrogate_derivative(neuron, trace.membranes[name])
                delta = (filtered @ self.feedback[name].T).reshape(psi.shape) * psi
            beta = float(neuron.beta.clamp(0, 1))
            layer.weight.grad, layer.bias.grad = local_gradient(
                layer, trace.inputs[name], trace.constant[name], delta, beta
            )
        self.optimizer.step()
        return StepOutput(loss=float(loss), forward_samples=x.shape[0])

    def update_signal(self) -> dict[str, Tensor]:
        return {n: m.weight.grad.detach().clone() for n, m in weight_layers(self.model) if m.weight.grad is not None}

    def exact_layers(self) -> frozenset[str]:
        """The output layer with a membrane readout (scores = mean membrane of non-resetting
        integrators: its eligibility trace is the exact gradient); none with a spike readout."""
        return frozenset({weight_layers(self.model)[-1][0]}) if self.params.readout == "membrane" else frozenset()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "feedback": {k: v.clone() for k, v in self.feedback.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.feedback = {k: v.to(self.device) for k, v in state["feedback"].items()}
