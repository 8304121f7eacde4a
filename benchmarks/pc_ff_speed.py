"""Step time of predictive coding (pc) and forward-forward (ff) relative to a plain-torch backprop step.

MLP ``--inputs``-256-256-10 (default 784: mnist-sized; 64 is digits), ReLU, Adam, batch 64
(``--batch``), random inputs cycled from a pool of distinct batches, one torch thread
(``--threads``). The backprop reference is written in plain torch (``nn.Sequential``,
cross-entropy, ``backward()``, ``Adam.step()``; ``benchmarks.interleave.plain_backprop``),
independent of bpbench's learners. Each round
times one step of every contender in a shuffled order, so load from other processes hits all
alike; a contender's step time is its median over ``--rounds`` rounds. Prints wall-clock and
thread-CPU medians (the CPU time leaves out time the thread waited for a core on a shared
machine) and their ratios to backprop. The targets: pc/backprop <= 2.5 at T = 8
(``--steps``) on 784-256-256-10 batch 64; ff/backprop <= 2 at [256, 256].

    python -m benchmarks.pc_ff_speed [--rounds 300] [--batch 64] [--steps 8] [--inputs 784] [--device cpu]
"""

from __future__ import annotations

import torch

from benchmarks.interleave import Step, benchmark_parser, interleaved_medians, plain_backprop, print_ratios, random_pool
from bpbench.learners.base import TaskInfo
from bpbench.learners.ff import FFParams, ForwardForward
from bpbench.learners.models import ModelSpec
from bpbench.learners.pc import PCParams, PredictiveCoding


def main() -> None:
    p = benchmark_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="pc inference steps T")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = TaskInfo("bench", "image", (1, args.inputs), 10)
    spec = ModelSpec(hidden=(256, 256))

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    pc = PredictiveCoding(spec, task, PCParams(inference_steps=args.steps, batch_size=args.batch), gen(), device)
    ff = ForwardForward(spec, task, FFParams(batch_size=args.batch), gen(), device)
    steps: dict[str, Step] = {"backprop": plain_backprop(args.inputs, device), "pc": pc.train_step, "ff": ff.train_step}
    pool = random_pool(args.batch, args.inputs, device)
    med_wall, med_cpu = interleaved_medians(steps, pool, args.rounds, device)
    print(
        f"MLP {args.inputs}-256-256-10 ReLU, Adam, batch {args.batch}, {device}, {args.threads} thread(s), "
        f"pc T = {args.steps}; median of {args.rounds} interleaved steps"
    )
    print_ratios(med_wall, med_cpu, "backprop")
    for name, target in (("pc", 2.5), ("ff", 2.0)):
        print(
            f"{name}/backprop step time = {med_wall[name] / med_wall['backprop']:.2f} (wall), "
            f"{med_cpu[name] / med_cpu['backprop']:.2f} (thread CPU); target <= {target}"
        )


if __name__ == "__main__":
    main()
