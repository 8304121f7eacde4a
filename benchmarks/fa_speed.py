"""Step time of the feedback-alignment learners relative to backprop, from one run.

MLP 784-256-256-10 (ReLU, Adam), batch 256 (``--batch``), random inputs, one torch thread
(``--threads``). Each round times one ``train_step`` of every learner, in a shuffled order,
so load from other processes hits all learners alike; a learner's step time is its median
over ``--rounds`` rounds. Prints wall-clock and thread-CPU medians (the CPU time leaves out
time the thread waited for a core on a shared machine) and their ratios to backprop. The
target is FA/BP <= 1.05.

    python -m benchmarks.fa_speed [--rounds 300] [--batch 256] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.interleave import interleaved_medians, print_ratios
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import Learner, TaskInfo
from bpbench.learners.dfa import DirectFeedbackAlignment
from bpbench.learners.fa import FeedbackAlignment
from bpbench.learners.feedback import FeedbackParams
from bpbench.learners.models import ModelSpec
from bpbench.learners.sign_symmetry import SignSymmetry

LEARNERS: dict[str, tuple[type[Learner], type]] = {
    "backprop": (Backprop, BackpropParams),
    "fa": (FeedbackAlignment, FeedbackParams),
    "dfa": (DirectFeedbackAlignment, FeedbackParams),
    "sign_symmetry": (SignSymmetry, BackpropParams),
}


POOL = 50  # distinct random batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=300, help="timed steps per learner")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = TaskInfo("bench", "image", (1, 28, 28), 10)
    spec = ModelSpec(hidden=(256, 256))
    data = torch.Generator().manual_seed(0)
    # A pool of distinct batches, cycled: one batch repeated hundreds of times drives the loss
    # to ~0 and the optimizer state into subnormal floats, whose slow arithmetic would time
    # that degenerate regime instead of training.
    pool = [
        (
            torch.randn(args.batch, 1, 28, 28, generator=data).to(device),
            torch.randint(0, 10, (args.batch,), generator=data).to(device),
        )
        for _ in range(POOL)
    ]
    learners = {
        name: cls(spec, task, params(batch_size=args.batch), torch.Generator().manual_seed(0), device)
        for name, (cls, params) in LEARNERS.items()
    }
    steps = {name: learner.train_step for name, learner in learners.items()}
    med_wall, med_cpu = interleaved_medians(steps, pool, args.rounds, device)
    print(
        f"MLP 784-256-256-10, batch {args.batch}, {device}, {args.threads} thread(s); "
        f"median of {args.rounds} interleaved steps"
    )
    print_ratios(med_wall, med_cpu, "backprop")
    print(
        f"FA/BP step time = {med_wall['fa'] / med_wall['backprop']:.3f} (wall), "
        f"{med_cpu['fa'] / med_cpu['backprop']:.3f} (thread CPU)"
    )


if __name__ == "__main__":
    main()
