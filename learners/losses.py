"""The top losses a learner can train: a name -> the batch-mean loss of logits against labels.

``"ce"``: mean cross-entropy. ``"mse"``: squared error against the one-hot target, ½‖z − onehot(y)‖²
per example, averaged over the batch (predictive coding's top energy, Whittington & Bogacz 2017).
A learner declares the one it trains by ``Learner.objective``; ``true_gradient`` differentiates it.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

LossName = Literal["ce", "mse"]
LOSSES: tuple[str, ...] = ("ce", "mse")


def top_loss(logits: Tensor, y: Tensor, kind: str) -> Tensor:
    """logits (B, C), labels (B,) -> scalar batch mean of the loss ``kind`` ("ce" | "mse")."""
    if kind == "ce":
        return F.cross_entropy(logits, y)
    if kind == "mse":
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        return 0.5 * (logits - target).square().sum(1).mean()
    raise ValueError(f"loss = {kind!r}: allowed are {', '.join(map(repr, LOSSES))}")
