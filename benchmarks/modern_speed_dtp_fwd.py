"""Step time of difference target propagation (dtp) and forward gradients (fwd_grad) relative to
a plain-torch backprop step.

MLP ``--inputs``-256-256-10 (default 784: mnist-sized; 64 is digits), Adam, batch 64
(``--batch``), random inputs cycled from a pool of distinct batches, one torch thread
(``--threads``). The backprop references are written in plain torch (``nn.Sequential``,
cross-entropy, ``backward()``, ``Adam.step()``; ``benchmarks.interleave.plain_backprop``),
independent of bpbench's learners: one with tanh (dtp's partner: dtp runs tanh, as in the
study) and one with ReLU (fwd_grad's partner).
Each round times one step of every contender in a shuffled order, so load from other
processes hits all alike; a contender's step time is its median over ``--rounds`` rounds.
Prints wall-clock and thread-CPU medians (the CPU time leaves out time the thread waited for
a core on a shared machine) and their ratios. The targets: dtp/backprop <= 2.5;
fwd_grad weight/backprop <= 2, activity/backprop <= 3.5.

    python -m benchmarks.modern_speed_dtp_fwd [--rounds 300] [--batch 64] [--inputs 784] [--device cpu]
"""

from __future__ import annotations

import torch

from benchmarks.interleave import Step, benchmark_parser, interleaved_medians, plain_backprop, print_ratios, random_pool
from bpbench.learners.base import TaskInfo
from bpbench.learners.dtp import DifferenceTargetPropagation, DTPParams
from bpbench.learners.fwd_grad import ForwardGradient, ForwardGradientParams
from bpbench.learners.models import ModelSpec


def main() -> None:
    args = benchmark_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = TaskInfo("bench", "image", (1, args.inputs), 10)
    relu, tanh = ModelSpec(hidden=(256, 256)), ModelSpec(hidden=(256, 256), activation="tanh")

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    contenders = {
        "dtp_gradient": DifferenceTargetPropagation(tanh, task, DTPParams(batch_size=args.batch), gen(), device),
        "dtp_target": DifferenceTargetPropagation(
            tanh, task, DTPParams(penultimate="target", batch_size=args.batch), gen(), device
        ),
        "fwd_weight": ForwardGradient(relu, task, ForwardGradientParams(batch_size=args.batch), gen(), device),
        "fwd_activity": ForwardGradient(
            relu, task, ForwardGradientParams(perturb="activity", batch_size=args.batch), gen(), device
        ),
    }
    steps: dict[str, Step] = {
        "backprop_relu": plain_backprop(args.inputs, device, "relu"),
        "backprop_tanh": plain_backprop(args.inputs, device, "tanh"),
        **{name: learner.train_step for name, learner in contenders.items()},
    }
    pool = random_pool(args.batch, args.inputs, device)
    med_wall, med_cpu = interleaved_medians(steps, pool, args.rounds, device)
    print(
        f"MLP {args.inputs}-256-256-10, Adam, batch {args.batch}, {device}, {args.threads} thread(s); "
        f"median of {args.rounds} interleaved steps; ratios to plain-torch backprop with ReLU"
    )
    print_ratios(med_wall, med_cpu, "backprop_relu")
    for name, partner, target in (
        ("dtp_gradient", "backprop_tanh", 2.5),
        ("dtp_target", "backprop_tanh", 2.5),
        ("fwd_weight", "backprop_relu", 2.0),
        ("fwd_activity", "backprop_relu", 3.5),
    ):
        print(
            f"{name}/{partner} step time = {med_wall[name] / med_wall[partner]:.2f} (wall), "
            f"{med_cpu[name] / med_cpu[partner]:.2f} (thread CPU); target <= {target}"
        )


if __name__ == "__main__":
    main()
