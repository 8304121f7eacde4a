"""Step time of difference target propagation (dtp) and forward gradients (fwd_grad) relative to
a plain-torch backprop step.

MLP ``--inputs``-256-256-10 (default 784: mnist-sized; 64 is digits), Adam, batch 64
(``--batch``), random inputs cycled from a pool of distinct batches, one torch thread
(``--threads``). The backprop references are written here in plain torch (``nn.Sequential``,
cross-entropy, ``backward()``, ``Adam.step()``), independent of bpbench's learners: one with
tanh (dtp's partner: dtp runs tanh, as in the study) and one with ReLU (fwd_grad's partner).
Each round times one step of every contender in a shuffled order, so load from other
processes hits all alike; a contender's step time is its median over ``--rounds`` rounds.
Prints wall-clock and thread-CPU medians (the CPU time leaves out time the thread waited for
a core on a shared machine) and their ratios. The issue's targets: dtp/backprop <= 2.5;
fwd_grad weight/backprop <= 2, activity/backprop <= 3.5.

    python -m benchmarks.modern_speed_dtp_fwd [--rounds 300] [--batch 64] [--inputs 784] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.interleave import Step, interleaved_medians, print_ratios
from bpbench.learners.base import TaskInfo
from bpbench.learners.dtp import DifferenceTargetPropagation, DTPParams
from bpbench.learners.fwd_grad import ForwardGradient, ForwardGradientParams
from bpbench.learners.models import ModelSpec

POOL = 50  # distinct random batches, cycled
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def torch_backprop(inputs: int, activation: str, device: torch.device) -> Step:
    """A backprop step in plain torch with the given hidden activation: the independent reference."""
    torch.manual_seed(0)
    act = ACTIVATIONS[activation]
    net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, 256), act(), nn.Linear(256, 256), act(),
                        nn.Linear(256, 10)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(x: Tensor, y: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=300, help="timed steps per contender")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inputs", type=int, default=784, help="input width (784 mnist, 64 digits)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = TaskInfo("bench", "image", (1, args.inputs), 10)
    relu, tanh = ModelSpec(hidden=(256, 256)), ModelSpec(hidden=(256, 256), activation="tanh")

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)
    contenders = {
        "dtp_gradient": DifferenceTargetPropagation(tanh, task, DTPParams(batch_size=args.batch), gen(), device),
        "dtp_target": DifferenceTargetPropagation(tanh, task, DTPParams(penultimate="target", batch_size=args.batch),
                                                  gen(), device),
        "fwd_weight": ForwardGradient(relu, task, ForwardGradientParams(batch_size=args.batch), gen(), device),
        "fwd_activity": ForwardGradient(relu, task, ForwardGradientParams(perturb="activity", batch_size=args.batch),
                                        gen(), device),
    }
    steps: dict[str, Step] = {"backprop_relu": torch_backprop(args.inputs, "relu", device),
                              "backprop_tanh": torch_backprop(args.inputs, "tanh", device),
                              **{name: learner.train_step for name, learner in contenders.items()}}
    data = torch.Generator().manual_seed(0)
    pool = [(torch.randn(args.batch, 1, args.inputs, generator=data).to(device),
             torch.randint(0, 10, (args.batch,), generator=data).to(device)) for _ in range(POOL)]
    med_wall, med_cpu = interleaved_medians(steps, pool, args.rounds, device)
    print(f"MLP {args.inputs}-256-256-10, Adam, batch {args.batch}, {device}, {args.threads} thread(s); "
          f"median of {args.rounds} interleaved steps; ratios to plain-torch backprop with ReLU")
    print_ratios(med_wall, med_cpu, "backprop_relu")
    for name, partner, target in (("dtp_gradient", "backprop_tanh", 2.5), ("dtp_target", "backprop_tanh", 2.5),
                                  ("fwd_weight", "backprop_relu", 2.0), ("fwd_activity", "backprop_relu", 3.5)):
        print(f"{name}/{partner} step time = {med_wall[name] / med_wall[partner]:.2f} (wall), "
              f"{med_cpu[name] / med_cpu[partner]:.2f} (thread CPU); target <= {target}")


if __name__ == "__main__":
    main()
