"""What the spiking learners share: the spiking network, its time loop, state reset and readout.

The network is the shared model (``learners.models.build_model``) with snntorch ``Leaky``
(LIF) neurons in place of its activations, plus one output neuron ``act_out`` after the
``out`` layer. Each time step::

    cur = layer(input);  U[t] = beta * U[t-1] + cur - S[t-1] * threshold;  S[t] = H(U[t] - threshold)

with the surrogate derivative of snntorch's ``spike_grad`` in the backward pass. The first
connection layer (everything before the first neuron) runs once: on the constant input
(direct current) or on all T steps as one batch; the rest runs step by step.

Readout: ``spikes``: class scores = output spike counts over the T steps; ``membrane``:
the mean over time of the output neurons' membrane (non-resetting integrators).

State: every simulation starts its membranes at zero and keeps them in the time loop
(``SpikingNet.step``: snntorch's ``Leaky`` update, written out); the neurons' own ``mem``
buffers are never read or written, so nothing carries over between simulations or
networks. The neurons are taken off snntorch's global ``SpikingNeuron.instances`` list, so
finished networks are not kept alive (snntorch issue #438).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import SpikingNeuron, surrogate
from torch import Tensor, nn

from bpbench.learners.backprop import BackpropParams, make_optimizer
from bpbench.learners.base import Learner, TaskInfo
from bpbench.learners.encoders import SpikeInput, encode
from bpbench.learners.models import PLAIN_ARCHS, ModelSpec, build_model, weight_layers
from bpbench.learners.params import param
from bpbench.learners.synops import count_synops

SURROGATES = {
    "fast_sigmoid": (surrogate.fast_sigmoid, "slope"),
    "atan": (surrogate.atan, "alpha"),
    "sigmoid": (surrogate.sigmoid, "slope"),
}


@dataclass(frozen=True)
class SpikingParams(BackpropParams):
    """Backprop's optimizer options plus the neuron and coding options of the spiking learners.

    num_steps: time steps for image tasks (speech uses its T frames). beta: membrane decay
    in (0, 1]; learn_beta: train it (one per layer). threshold > 0. surrogate:
    fast_sigmoid | atan | sigmoid (snntorch.surrogate); surrogate_slope: its slope (atan:
    alpha), None = snntorch's default (25; atan 2). readout: spikes | membrane.
    encoding (images): direct | rate | latency (see learners.encoders).
    """

    num_steps: int = param(10, ge=1)
    beta: float = param(0.9, gt=0, le=1)
    learn_beta: bool = False
    threshold: float = param(1.0, gt=0)
    surrogate: Literal["fast_sigmoid", "atan", "sigmoid"] = "fast_sigmoid"
    surrogate_slope: float | None = param(None, gt=0, unset="snntorch's default")
    readout: Literal["spikes", "membrane"] = "membrane"
    encoding: Literal["direct", "rate", "latency"] = "direct"


def make_neuron(params: SpikingParams, integrator: bool = False) -> snn.Leaky:
    """One LIF layer (``integrator``: no reset, for a membrane readout), off snntorch's global list."""
    fn, slope_name = SURROGATES[params.surrogate]
    spike_grad = fn() if params.surrogate_slope is None else fn(**{slope_name: params.surrogate_slope})
    neuron = snn.Leaky(
        beta=params.beta,
        threshold=params.threshold,
        spike_grad=spike_grad,
        learn_beta=params.learn_beta,
        init_hidden=True,
        reset_mechanism="none" if integrator else "subtract",
    )
    SpikingNeuron.instances.remove(neuron)  # no global handle: no cross-network reset, no leak
    return neuron


def step_input_shape(task: TaskInfo) -> tuple[int, ...]:
    """Shape of one time step's input: the image itself, or one speech frame (F,)."""
    return task.input_shape if task.modality == "image" else task.input_shape[1:]


def build_spiking_model(
    spec: ModelSpec, task: TaskInfo, params: SpikingParams, generator: torch.Generator
) -> nn.Sequential:
    """The shared model with LIF neurons as activations and an output neuron ``act_out``."""
    model = build_model(spec, step_input_shape(task), task.n_classes, generator, activation=lambda: make_neuron(params))
    model.add_module("act_out", make_neuron(params, integrator=params.readout == "membrane"))
    return model


def is_connection(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.Conv2d))


@dataclass
class Trace:
    """What a recorded simulation saw, keyed by connection layer name.

    inputs: the layer's input, (B, ...) if ``constant[name]`` else (T, B, ...).
    membranes, spikes: of the neurons the layer drives, (T, B, ...); membranes before reset.
    """

    inputs: dict[str, Tensor] = field(default_factory=dict)
    constant: dict[str, bool] = field(default_factory=dict)
    membranes: dict[str, Tensor] = field(default_factory=dict)
    spikes: dict[str, Tensor] = field(default_factory=dict)


def leaky_kind(neuron: SpikingNeuron) -> bool:
    """True for an integrator (reset "none"), False for a subtract-reset ``Leaky`` neuron; a
    ValueError for any other neuron, whose update ``SpikingNet`` does not step."""
    if not isinstance(neuron, snn.Leaky):
        raise ValueError(f"SpikingNet steps snntorch Leaky neurons, got {type(neuron).__name__}")
    mechanism = int(neuron.reset_mechanism_val)
    plain = (
        neuron.reset_delay
        and not neuron.state_quant
        and not neuron.inhibition
        and not neuron.output
        and float(neuron.graded_spikes_factor) == 1.0
        and not neuron.graded_spikes_factor.requires_grad
    )
    if mechanism not in (0, 2) or not plain:
        raise ValueError(
            f"SpikingNet steps Leaky neurons with reset 'subtract' or 'none', delayed reset, "
            f"graded spikes 1, no quantization or inhibition; got {neuron!r}"
        )
    return mechanism == 2


class SpikingNet(nn.Module):
    """Runs a spiking ``nn.Sequential`` over time; the membranes live in the loop, not on the neurons.

    A module itself, so the whole time loop is one forward call of the network. Connection
    layers, batch norm and dropout run as modules (hooks on them fire once per call); each
    snntorch ``Leaky`` neuron is stepped by ``step``, which computes exactly what
    ``neuron(current)`` computes (values and gradients) with fewer operations: snntorch
    recomputes the delayed reset H(U[t-1] - threshold) from the membrane through a second
    surrogate call, clones it and multiplies spikes by a graded-spike factor of 1; the reset is
    the previous step's spike, detached, and the factor is 1 (``leaky_kind`` checks it).
    """

    def __init__(self, model: nn.Sequential, readout: Literal["spikes", "membrane"]) -> None:
        super().__init__()
        children = list(model.named_children())
        first = next(i for i, (_, m) in enumerate(children) if isinstance(m, SpikingNeuron))
        self.model = model
        self.readout = readout
        self.stem = children[:first]  # up to the first neuron: runs once, batched over time
        self.body = children[first:]
        self.neurons: list[tuple[str, snn.Leaky]] = []  # (driving connection layer, neuron)
        self.integrator: list[bool] = []
        self.slot: dict[int, int] = {}  # id(neuron) -> its index in self.neurons
        last = ""
        for name, m in children:
            if is_connection(m):
                last = name
            elif isinstance(m, SpikingNeuron):
                self.slot[id(m)] = len(self.neurons)
                self.neurons.append((last, m))
                self.integrator.append(leaky_kind(m))

    def reset(self) -> None:
        """Empty the neurons' own ``mem`` buffers (the time loop never reads or writes them)."""
        for _, neuron in self.neurons:
            neuron.mem = neuron.mem.new_zeros(0)

    def _stem(self, x: Tensor, trace: Trace | None, constant: bool, steps: int) -> Tensor:
        for name, m in self.stem:
            if trace is not None and is_connection(m):
                trace.inputs[name] = x if constant else x.unflatten(0, (steps, -1))
                trace.constant[name] = constant
            x = m(x)
        return x

    def forward(self, inp: SpikeInput, trace: Trace | None = None) -> Tensor:
        """Class scores (B, n_classes) after ``inp.steps`` steps; ``trace`` records what it saw."""
        if inp.constant:
            current, currents = self._stem(inp.x, trace, True, inp.steps), None
        else:
            current = None
            currents = self._stem(inp.x.flatten(0, 1), trace, False, inp.steps).unflatten(0, (inp.steps, -1))
        if trace is None:
            return self._run(current, currents, inp.steps)
        return self._run_traced(current, currents, inp.steps, trace)

    def step(
        self, k: int, current: Tensor, state: list[tuple[Tensor, Tensor] | None], betas: list[Tensor], fire: bool
    ) -> Tensor:
        """One time step of neuron ``k`` on its input ``current``; ``state[k]`` = (membrane, spikes)
        of the step before (None before the first) is replaced by this step's. Returns the
        spikes; an integrator with ``fire`` false skips them (nobody reads them) and returns
        the previous ones."""
        neuron = self.neurons[k][1]
        previous = state[k]
        mem, spk = previous if previous is not None else (torch.zeros_like(current),) * 2
        beta = neuron.beta.clamp(0, 1) if neuron.beta.requires_grad else betas[k]  # learn_beta: per step, as snntorch
        if self.integrator[k]:
            mem = beta * mem + current
        else:
            mem = beta * mem + current - spk.detach() * neuron.threshold
        spk = neuron.spike_grad(mem - neuron.threshold) if fire or not self.integrator[k] else spk
        state[k] = (mem, spk)
        return spk

    def _readout(self, total: Tensor, steps: int) -> Tensor:
        return total if self.readout == "spikes" else total / steps

    def _start(self) -> tuple[list[tuple[Tensor, Tensor] | None], list[Tensor]]:
        return [None] * len(self.neurons), [n.beta.clamp(0, 1) for _, n in self.neurons]

    def _run(self, current: Tensor | None, currents: Tensor | None, steps: int) -> Tensor:
        state, betas = self._start()
        spikes, last = self.readout == "spikes", len(self.neurons) - 1
        total: Tensor | float = 0.0
        for t in range(steps):
            h = cast(Tensor, current) if currents is None else currents[t]  # forward gives one of the two
            for _, m in self.body:
                k = self.slot.get(id(m))
                h = m(h) if k is None else self.step(k, h, state, betas, fire=k != last or spikes)
            total = total + (h if spikes else state[last][0])  # type: ignore[index]
        return self._readout(total, steps)  # type: ignore[arg-type]

    def _run_traced(self, current: Tensor | None, currents: Tensor | None, steps: int, trace: Trace) -> Tensor:
        state, betas = self._start()
        inputs: dict[str, list[Tensor]] = {}
        mems: dict[str, list[Tensor]] = {}
        spks: dict[str, list[Tensor]] = {}
        total: Tensor | float = 0.0
        for t in range(steps):
            h = cast(Tensor, current) if currents is None else currents[t]  # forward gives one of the two
            for name, m in self.body:
                k = self.slot.get(id(m))
                if k is None:
                    if is_connection(m):
                        inputs.setdefault(name, []).append(h)
                    h = m(h)
                    continue
                h = self.step(k, h, state, betas, fire=True)
                driver = self.neurons[k][0]
                mems.setdefault(driver, []).append(state[k][0])  # type: ignore[index]
                spks.setdefault(driver, []).append(h)
            total = total + (h if self.readout == "spikes" else state[-1][0])  # type: ignore[index]
        for name, seq in inputs.items():
            trace.inputs[name], trace.constant[name] = torch.stack(seq), False
        trace.membranes = {k: torch.stack(v) for k, v in mems.items()}
        trace.spikes = {k: torch.stack(v) for k, v in spks.items()}
        return self._readout(total, steps)  # type: ignore[arg-type]


def firing_rows(trace: Trace, include_output: bool) -> list[tuple[str, str, float]]:
    """firing_rate and silent_fraction per neuron layer, activation_sparsity over all of them.

    firing_rate: spikes per neuron per step; silent_fraction: share of neurons (each unit
    or feature-map position) that never fire on any sample or step; activation_sparsity:
    zero outputs / all outputs of the spiking layers (NeuroBench). No rows when no layer
    spikes (a linear model with a membrane readout).
    """
    rows: list[tuple[str, str, float]] = []
    zeros, total = 0, 0
    layers = list(trace.spikes.items()) if include_output else list(trace.spikes.items())[:-1]
    if not layers:
        return rows
    for name, s in layers:
        rows.append(("firing_rate", name, float(s.float().mean())))
        rows.append(("silent_fraction", name, float((s.flatten(0, 1).sum(0) == 0).float().mean())))
        zeros += int((s == 0).sum())
        total += s.numel()
    rows.append(("activation_sparsity", "", zeros / total))
    return rows


@contextmanager
def untouched(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run a block without changing ``model``'s batch-norm statistics or the global RNGs."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [[b.clone() for b in m.buffers()] for m in norms]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    with torch.no_grad():
        for m, copies in zip(norms, saved):
            for b, c in zip(m.buffers(), copies):
                b.copy_(c)


class SpikingLearner(Learner):
    """Base of the spiking learners: network, encoding, prediction, measurements, state.

    Subclasses implement ``train_step`` and ``update_signal``; ``train_input(x)`` gives
    the step's encoded input (it advances the learner's spike generator).
    """

    Params = SpikingParams
    params: SpikingParams
    model: nn.Sequential
    archs = PLAIN_ARCHS  # the time loop walks a plain Sequential (no residual blocks)

    def setup(self) -> None:
        task, params, device = self.task, self.params, self.device
        if task.modality == "speech" and params.encoding != "direct":
            raise ValueError(
                f"encoding = {params.encoding!r} applies to image tasks; on speech ({task.name}) "
                "the MFCC frames are the time axis: use encoding = 'direct'"
            )
        self.model = build_spiking_model(self.model_spec, task, params, self.generator).to(device)
        self.net = SpikingNet(self.model, params.readout)
        self.optimizer = make_optimizer(params, self.model.parameters())
        seeds = torch.randint(0, 2**62, (2,), generator=self.generator)
        self.spike_generator = torch.Generator(device=device).manual_seed(int(seeds[0]))
        self.eval_seed = int(seeds[1])  # predict draws its rate-coded spikes from this, every time

    def train_input(self, x: Tensor) -> SpikeInput:
        return encode(x, self.task.modality, self.params.encoding, self.params.num_steps, self.spike_generator)

    def eval_input(self, x: Tensor) -> SpikeInput:
        g = torch.Generator(device=self.device).manual_seed(self.eval_seed)
        return encode(x, self.task.modality, self.params.encoding, self.params.num_steps, g)

    def simulate_eval(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.net(self.eval_input(x), trace)
        finally:
            self.model.train(was_training)

    def predict(self, x: Tensor) -> Tensor:
        return self.simulate_eval(x)

    def bptt_gradient(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Surrogate-gradient BPTT gradient of the mean cross-entropy on the spikes the next
        ``train_step`` will see (same spike draws, dropout masks); changes no state."""
        layers = weight_layers(self.model)
        rng = self.spike_generator.get_state()
        try:
            with untouched(self.model, self.device), torch.enable_grad():
                self.model.train()
                loss = F.cross_entropy(self.net(self.train_input(x)), y)
                grads = torch.autograd.grad(loss, [m.weight for _, m in layers])
        finally:
            self.spike_generator.set_state(rng)
        return {n: g.detach() for (n, _), g in zip(layers, grads)}

    def true_gradient(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        return self.bptt_gradient(x, y)

    def evaluation_metrics(self, x: Tensor) -> list[tuple[str, str, float]]:
        """Firing rows and per-layer synaptic operations of one recorded simulation of ``x``: the
        NeuroBench hooks ``inference_cost`` puts on ``predict`` count this same simulation."""
        trace = Trace()
        layers = count_synops(self.model, lambda: self.simulate_eval(x, trace), x.shape[0])
        rows = firing_rows(trace, include_output=self.params.readout == "spikes")
        for name, ops in layers.items():
            rows += [("synops_dense", name, ops.dense), ("synops_effective", name, ops.effective)]
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "spike_generator": self.spike_generator.get_state(),
            "eval_seed": self.eval_seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.spike_generator.set_state(state["spike_generator"])
        self.eval_seed = int(state["eval_seed"])
