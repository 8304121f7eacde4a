"""snn_bptt's train step against a hand-written LIF loop of the same size and the same math.

784-256-10, T = 25, batch 128, Adam, one thread. Both sides compute the same thing: the
first layer once on the constant input (direct coding) or once over all T steps
(rate coding), then per step a LIF hidden layer (subtract reset, delayed as in snntorch,
fast-sigmoid surrogate) and the output layer, cross-entropy on the readout, backward,
Adam. The script checks that both give the same loss from the same weights, then prints
the best-of-``--repeats`` median CPU time per step of each and their ratio (process
time, so that other jobs on a shared machine do not count).

    python -m benchmarks.snn_speed [--encoding direct|rate|both] [--readout membrane|spikes]

A bare snntorch loop (the same network written tutorial-style with ``snn.Leaky``) is
timed too, so the cost of snntorch's neuron and the cost of bpbench's wrapper show apart
(snn_bptt steps the neurons' update itself, ``learners.spiking.SpikingNet.step``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import surrogate
from torch import Tensor, nn

from bpbench.learners.base import TaskInfo
from bpbench.learners.models import ModelSpec
from bpbench.learners.snn_bptt import SpikingBPTT
from bpbench.learners.spiking import SpikingParams


class Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid derivative 1 / (1 + k|v|)^2 backward (k = 25)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, v: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        return (v > 0).float()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (v,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad / (25.0 * v.abs() + 1.0) ** 2


def hand_forward(
    fc1: nn.Linear,
    out: nn.Linear,
    x: Tensor,
    steps: int,
    constant: bool,
    readout: str,
    beta: float = 0.9,
    thr: float = 1.0,
) -> Tensor:
    """The LIF network written out: x is (B, 784) if constant else (T, B, 784)."""
    cur1 = fc1(x) if constant else fc1(x.flatten(0, 1)).unflatten(0, (steps, -1))
    mem1 = torch.zeros(cur1.shape[-2:])
    mem2 = torch.zeros(x.shape[-2], out.out_features)
    total: Tensor | float = 0.0
    for t in range(steps):
        reset1 = (mem1 > thr).float()
        mem1 = beta * mem1 + (cur1 if constant else cur1[t]) - reset1 * thr
        spk1 = Spike.apply(mem1 - thr)
        if readout == "membrane":
            mem2 = beta * mem2 + out(spk1)
            total = total + mem2
        else:
            reset2 = (mem2 > thr).float()
            mem2 = beta * mem2 + out(spk1) - reset2 * thr
            total = total + Spike.apply(mem2 - thr)
    return total / steps if readout == "membrane" else total  # type: ignore[return-value]


def bare_snntorch_forward(
    fc1: nn.Linear,
    lif1: nn.Module,
    out: nn.Linear,
    lif2: nn.Module,
    x: Tensor,
    steps: int,
    constant: bool,
    readout: str,
) -> Tensor:
    """The same network as a bare snntorch script (tutorial style: states passed by hand)."""
    cur1 = fc1(x) if constant else fc1(x.flatten(0, 1)).unflatten(0, (steps, -1))
    mem1, mem2 = lif1.reset_mem(), lif2.reset_mem()
    total: Tensor | float = 0.0
    for t in range(steps):
        spk1, mem1 = lif1(cur1 if constant else cur1[t], mem1)
        spk2, mem2 = lif2(out(spk1), mem2)
        total = total + (mem2 if readout == "membrane" else spk2)
    return total / steps if readout == "membrane" else total  # type: ignore[return-value]


def median_step(fn: Callable[[], object], steps: int) -> float:
    """Median CPU seconds of ``fn`` (process time: on a shared machine, waiting is not counted)."""
    times = []
    for _ in range(steps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def measure(encoding: str, readout: str, steps: int, repeats: int) -> tuple[float, float, float]:
    """Best-of-``repeats`` median seconds per train step: (hand loop, snn_bptt, bare snntorch)."""
    T, B = 25, 128
    task = TaskInfo("bench", "image", (1, 28, 28), 10)
    params = SpikingParams(num_steps=T, encoding=encoding, readout=readout, batch_size=B)  # type: ignore[arg-type]
    learner = SpikingBPTT(ModelSpec(hidden=(256,)), task, params, torch.Generator().manual_seed(0), torch.device("cpu"))
    fc1, out = nn.Linear(784, 256), nn.Linear(256, 10)
    fc1.load_state_dict(learner.model.fc1.state_dict())
    out.load_state_dict(learner.model.out.state_dict())
    hand_opt = torch.optim.Adam([*fc1.parameters(), *out.parameters()], lr=params.lr)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(B, 1, 28, 28, generator=gen), torch.randint(0, 10, (B,), generator=gen)

    def hand_input() -> tuple[Tensor, bool]:  # the same encoders' output, built by hand
        if encoding == "direct":
            return x.flatten(1), True
        lo, hi = x.flatten(1).min(1, keepdim=True).values, x.flatten(1).max(1, keepdim=True).values
        p = ((x.flatten(1) - lo) / (hi - lo)).expand(T, B, 784)
        return torch.bernoulli(p, generator=gen), False

    def hand_step() -> float:
        inp, constant = hand_input()
        hand_opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(hand_forward(fc1, out, inp, T, constant, readout), y)
        loss.backward()
        hand_opt.step()
        return loss.item()

    def snn_step() -> float:
        return learner.train_step(x, y).loss

    bare_fc1, bare_out = nn.Linear(784, 256), nn.Linear(256, 10)
    bare_fc1.load_state_dict(fc1.state_dict())
    bare_out.load_state_dict(out.state_dict())
    lif1 = snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid())
    lif2 = snn.Leaky(
        beta=0.9, spike_grad=surrogate.fast_sigmoid(), reset_mechanism="none" if readout == "membrane" else "subtract"
    )
    bare_opt = torch.optim.Adam([*bare_fc1.parameters(), *bare_out.parameters()], lr=params.lr)

    def bare_step() -> float:
        inp, constant = hand_input()
        bare_opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(bare_snntorch_forward(bare_fc1, lif1, bare_out, lif2, inp, T, constant, readout), y)
        loss.backward()
        bare_opt.step()
        return loss.item()

    if encoding == "direct":  # same weights, same input: same loss
        a, b, c = hand_step(), snn_step(), bare_step()
        if max(abs(a - b), abs(a - c)) > 1e-4 * max(1.0, abs(a)):
            raise SystemExit(f"hand loop, snn_bptt and bare snntorch disagree: loss {a}, {b}, {c}")
    for _ in range(3):
        hand_step(), snn_step(), bare_step()  # warm-up
    hands, snns, bares = [], [], []
    for _ in range(repeats):  # interleaved, so all see the same machine load
        hands.append(median_step(hand_step, steps))
        snns.append(median_step(snn_step, steps))
        bares.append(median_step(bare_step, steps))
    return min(hands), min(snns), min(bares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoding", choices=["direct", "rate", "both"], default="both")
    parser.add_argument("--readout", choices=["membrane", "spikes"], default="membrane")
    parser.add_argument("--steps", type=int, default=20, help="timed train steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"784-256-10, T=25, batch 128, readout={args.readout}, Adam, 1 thread; CPU ms per train step")
    print(
        f"{'encoding':<10}{'hand loop':>10}{'snn_bptt':>10}{'bare snntorch':>15}{'snn_bptt/hand':>15}{'bare/hand':>11}"
    )
    for encoding in ["direct", "rate"] if args.encoding == "both" else [args.encoding]:
        hand, snn_t, bare = measure(encoding, args.readout, args.steps, args.repeats)
        print(
            f"{encoding:<10}{hand * 1e3:>10.1f}{snn_t * 1e3:>10.1f}{bare * 1e3:>15.1f}"
            f"{snn_t / hand:>15.2f}{bare / hand:>11.2f}"
        )
    print("target: snn_bptt / hand <= 1.25 with direct input")


if __name__ == "__main__":
    main()
