"""Counted training FLOPs of one step of every built-in learner, against backprop on the same net and batch.

    python -m benchmarks.flop_counts

What the runner's counter (``torch.utils.flop_counter``, via ``experiments.run.probes.count_flops``)
sees in one ``train_step``: MLP 256-256 on 28x28 inputs (mnist5k's shape), batch 64 (population
learners: their default population on batch 64; cmaes: a linear model of 8x8 inputs, the only size it
takes). Prints, per learner: the step's FLOPs, F = one forward pass of the same net on the same batch
(backprop's ``predict``; the activation does not change a FLOP count), step / F, and step / backprop's
step on the same net and batch.
"""

from __future__ import annotations

import torch

from bpbench.experiments.plan.registry import learner_registry
from bpbench.experiments.run.probes import count_flops
from bpbench.learners.base import TaskInfo
from bpbench.learners.models import ModelSpec

MNIST = TaskInfo("mnist-shaped", "image", (1, 28, 28), 10)
SMALL = TaskInfo("digits-shaped", "image", (1, 8, 8), 10)
ROWS: list[tuple[str, dict, ModelSpec, TaskInfo]] = [
    ("backprop", {}, ModelSpec(), MNIST),
    ("fa", {}, ModelSpec(), MNIST),
    ("dfa", {}, ModelSpec(), MNIST),
    ("sign_symmetry", {}, ModelSpec(), MNIST),
    ("pc", {"inference_steps": 8}, ModelSpec(), MNIST),
    ("pc", {"inference_steps": 50}, ModelSpec(), MNIST),
    ("ff", {}, ModelSpec(), MNIST),
    ("dtp", {"penultimate": "gradient"}, ModelSpec(activation="tanh"), MNIST),
    ("dtp", {"penultimate": "target"}, ModelSpec(activation="tanh"), MNIST),
    ("fwd_grad", {"perturb": "weight"}, ModelSpec(), MNIST),
    ("fwd_grad", {"perturb": "activity"}, ModelSpec(), MNIST),
    ("es", {"population": 128}, ModelSpec(), MNIST),
    ("ga", {"population": 64}, ModelSpec(), MNIST),
    ("snn_bptt", {"num_steps": 10}, ModelSpec(), MNIST),
    ("snn_dfa", {"num_steps": 10}, ModelSpec(), MNIST),
    ("backprop", {}, ModelSpec(hidden=()), SMALL),
    ("cmaes", {}, ModelSpec(hidden=()), SMALL),
]


def main() -> None:
    torch.set_num_threads(1)
    registry = learner_registry()
    x_of = {id(MNIST): torch.rand(64, 1, 28, 28), id(SMALL): torch.rand(64, 1, 8, 8)}
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    reference: dict[tuple, int] = {}
    forwards: dict[tuple, int] = {}
    print(f"{'learner':34s} {'step FLOPs':>14s} {'forward F':>12s} {'step/F':>7s} {'/backprop':>9s}")
    for name, options, spec, info in ROWS:
        cls = registry.get(name)
        params = cls.Params(**options, batch_size=64)
        learner = cls(spec, info, params, torch.Generator().manual_seed(0), torch.device("cpu"))
        x = x_of[id(info)]
        key = (spec.arch, spec.hidden, id(info))  # backprop rows come first for each key
        if name == "backprop":
            _, forwards[key] = count_flops(lambda learner=learner, x=x: learner.predict(x))
        _, step = count_flops(lambda learner=learner, x=x: learner.train_step(x, y))
        forward = forwards[key]
        if name == "backprop":
            reference[key] = step
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        print(f"{label:34s} {step:14,d} {forward:12,d} {step / forward:7.2f} {step / reference[key]:9.3f}")


if __name__ == "__main__":
    main()
