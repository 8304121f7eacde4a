"""Turning a minibatch into network input over time for a spiking network.

In: images (B, C, H, W), standardized; or speech (B, T, F) MFCC frames.
Out: ``SpikeInput``: ``steps`` time steps of input, either one (B, *shape) tensor fed at
every step (``constant``: direct current) or a (T, B, *shape) sequence.

- direct: the standardized image as a constant input current at each of ``num_steps``.
- rate: per-sample min-max scaled intensities as Bernoulli spike probabilities, drawn
  from the caller's ``torch.Generator`` (seeded: same seed, same spikes).
- latency: one spike per pixel, brighter pixels earlier (``snntorch.spikegen.latency``,
  linear code over ``num_steps``; pixels under 1% intensity stay silent).
- frames: speech, the MFCC frames as the time axis (T = the task's frame count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from snntorch import spikegen
from torch import Tensor

Encoding = Literal["direct", "rate", "latency"]


@dataclass(frozen=True)
class SpikeInput:
    """Input over ``steps`` time steps: ``x`` is (B, *shape) if ``constant``, else (T, B, *shape)."""

    x: Tensor
    steps: int
    constant: bool

    @property
    def batch(self) -> int:
        return int(self.x.shape[0] if self.constant else self.x.shape[1])


def unit_scale(x: Tensor) -> Tensor:
    """Per-sample min-max scaling of (B, ...) to [0, 1] (standardized images -> intensities)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    span = (flat.max(dim=1, keepdim=True).values - lo).clamp_min(1e-12)
    return ((flat - lo) / span).reshape(x.shape)


def direct(x: Tensor, num_steps: int) -> SpikeInput:
    """The same analog current at every step."""
    return SpikeInput(x, num_steps, True)


def rate(x: Tensor, num_steps: int, generator: torch.Generator) -> SpikeInput:
    """Bernoulli spikes with probability = per-sample min-max intensity, from ``generator``."""
    p = unit_scale(x).unsqueeze(0).expand(num_steps, *x.shape)
    return SpikeInput(torch.bernoulli(p, generator=generator), num_steps, False)


def latency(x: Tensor, num_steps: int) -> SpikeInput:
    """Time-to-first-spike code: one spike per pixel, brighter earlier (snntorch's linear code)."""
    spikes = spikegen.latency(unit_scale(x), num_steps=num_steps, normalize=True, linear=True, clip=True)
    return SpikeInput(spikes, num_steps, False)


def frames(x: Tensor) -> SpikeInput:
    """Speech (B, T, F): frame t is the input current at step t."""
    return SpikeInput(x.transpose(0, 1), x.shape[1], False)


def encode(
    x: Tensor, modality: Literal["image", "speech"], encoding: Encoding, num_steps: int, generator: torch.Generator
) -> SpikeInput:
    """Encode a minibatch for the task's modality; ``generator`` is used by rate coding only."""
    if modality == "speech":
        if encoding != "direct":
            raise ValueError(
                f"encoding = {encoding!r} applies to image tasks; speech feeds its MFCC frames "
                "as time: use encoding = 'direct'"
            )
        return frames(x)
    if encoding == "direct":
        return direct(x, num_steps)
    if encoding == "rate":
        return rate(x, num_steps, generator)
    if encoding == "latency":
        return latency(x, num_steps)
    raise ValueError(f"encoding = {encoding!r}: allowed 'direct', 'rate', 'latency'")
