"""Inference cost per sample of trained backprop networks, counted two ways.

- FLOPs / 2 of ``predict`` (what non-spiking learners got before: every connection counted,
  zero inputs and zero-padding taps of convolutions included);
- NeuroBench's dense and effective synaptic operations from hooks on the model's connection
  layers (what every learner with a model gets now, spiking or not).

Trains backprop (Adam 1e-3, batch 64) for ``--epochs`` on an MLP 256-256 on mnist5k and a
CNN (channels 16, 32; hidden 64) on digits, then counts on 256 test samples.

    python -m scripts.energy_counts [--epochs 3]
"""

from __future__ import annotations

import argparse
import functools

import torch

from bpbench.experiments.plan.registry import task_registry
from bpbench.experiments.run.energy import ENERGY_PER_MAC_J, cost_rows
from bpbench.experiments.run.probes import count_flops
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.models import ModelSpec

CASES = {
    "mlp 256-256 on mnist5k": ("mnist5k", ModelSpec(hidden=(256, 256))),
    "cnn 16-32 / 64 on digits": ("digits", ModelSpec(arch="cnn", channels=(16, 32), hidden=(64,))),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    for name, (task, model) in CASES.items():
        cls = task_registry().get(task)
        data = cls().load(cls.Params())
        torch.manual_seed(0)
        learner = Backprop(model, data.info, BackpropParams(), torch.Generator().manual_seed(0), torch.device("cpu"))
        order = torch.Generator().manual_seed(1)
        for _ in range(args.epochs):
            perm = torch.randperm(len(data.train), generator=order)
            for start in range(0, len(perm), 64):
                idx = perm[start : start + 64]
                learner.train_step(data.train.x[idx], data.train.y[idx])
        x = data.test.x[:256]
        _, flops = count_flops(functools.partial(learner.predict, x))
        old_macs = flops / 2 / len(x)
        counted = {m: v for m, _, v in cost_rows(learner, x)}
        acc = float((learner.predict(data.test.x).argmax(1) == data.test.y).float().mean())
        print(
            f"{name} ({args.epochs} epochs, test acc {acc:.3f}): FLOPs/2 {old_macs:,.0f} MACs/sample "
            f"({old_macs * ENERGY_PER_MAC_J * 1e6:.4f} uJ); "
            f"NeuroBench dense {counted['synops_dense_per_sample']:,.0f}, "
            f"effective {counted['macs_per_sample']:,.0f} MACs/sample ({counted['energy_per_sample_j'] * 1e6:.4f} uJ); "
            f"FLOPs/2 over effective: {old_macs / counted['macs_per_sample']:.2f}x"
        )


if __name__ == "__main__":
    main()
