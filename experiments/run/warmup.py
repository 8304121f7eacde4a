"""A worker's one-time start-up costs, paid before its first run instead of inside it.

Some costs are paid once per process, by whatever first needs them: torch's first optimizer
imports ``torch._dynamo`` (about 1-2 s), the FLOP counter and the profiler set themselves up
on first use, and on CUDA the first tensor creates the device's context and the first matrix
product its BLAS handle. Left alone they land in a worker's first run (in its setup, in its
twin steps, or, for the optimizer of a learner built lazily, on its training clock) and make
that run look slower than the others. ``warm_up(device)`` pays them all at worker start-up,
before any run and off every clock; it changes no random stream and no result.
"""

from __future__ import annotations

import torch

from bpbench.experiments.run.probes import count_flops, forked_rng, peak_step_memory


def warm_up(device: torch.device) -> None:
    """Create an optimizer and take one tiny step under the FLOP counter and the memory probe on ``device``."""
    with forked_rng(device):
        layer = torch.nn.Linear(2, 2).to(device)
        optimizer = torch.optim.Adam(layer.parameters())  # the first optimizer imports torch._dynamo
        x = torch.ones(1, 2, device=device)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
            optimizer.step()

        count_flops(step)
        peak_step_memory(step, device)
