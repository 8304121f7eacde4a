"""Helpers of the option audit: a tiny task, optimizer-step recording, and the optimizers' own
formulas written out (torch's documented SGD and Adam updates), so an option's effect is checked
against the formula, not against another run of the same code."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bpbench.learners.base import Learner, TaskInfo
from bpbench.learners.models import ModelSpec

CPU = torch.device("cpu")
INFO = TaskInfo("audit", "image", (1, 4, 4), 4)
MLP = ModelSpec(hidden=(8,))
DEEP = ModelSpec(hidden=(8, 8))
LINEAR = ModelSpec(hidden=())


def batch(n: int = 24) -> tuple[Tensor, Tensor]:
    """The audit's one minibatch: (n, 1, 4, 4) standard-normal images, labels cycling 0..3."""
    g = torch.Generator().manual_seed(123)
    return torch.randn(n, *INFO.input_shape, generator=g), torch.arange(n) % INFO.n_classes


def make(cls: type[Learner], params: Any, spec: ModelSpec = MLP, seed: int = 0) -> Learner:
    return cls(spec, INFO, params, torch.Generator().manual_seed(seed), CPU)


def with_(cls: type[Learner], **changes: Any) -> Any:
    """``cls.Params()`` with ``changes``."""
    return dataclasses.replace(cls.Params(), **changes)


@dataclass
class StepLog:
    """What one optimizer saw at each ``step``: weights before, their gradients, weights after."""

    before: list[list[Tensor]] = field(default_factory=list)
    grads: list[list[Tensor | None]] = field(default_factory=list)
    after: list[list[Tensor]] = field(default_factory=list)


def record(optimizer: torch.optim.Optimizer) -> StepLog:
    """Wrap ``optimizer.step`` (on this instance) to log weights and gradients around each step."""
    log, real = StepLog(), optimizer.step
    tensors = [p for group in optimizer.param_groups for p in group["params"]]

    def step(*args: Any, **kwargs: Any) -> Any:
        log.before.append([p.detach().clone() for p in tensors])
        log.grads.append([None if p.grad is None else p.grad.detach().clone() for p in tensors])
        out = real(*args, **kwargs)
        log.after.append([p.detach().clone() for p in tensors])
        return out

    optimizer.step = step  # type: ignore[method-assign]
    return log


def formula_steps(log: StepLog, kind: str, lr: float, momentum: float, weight_decay: float) -> list[list[Tensor]]:
    """The weights after each logged step by the optimizer's formula (torch's docs), from the logged
    weights-before and gradients: SGD d = g + λw, b = d (first step) or μb + d, w -= lr·b; Adam
    d = g + λw, m = β₁m + (1−β₁)d, v = β₂v + (1−β₂)d², w -= lr·m̂ / (√v̂ + ε), β = (.9, .999), ε = 1e-8.
    A tensor without a gradient is left as it is (torch skips it, and its state)."""
    out: list[list[Tensor]] = []
    state: dict[int, dict[str, Any]] = {}
    for before, grads in zip(log.before, log.grads):
        row = []
        for i, (w, g) in enumerate(zip(before, grads)):
            w, s = w.double(), state.setdefault(i, {"t": 0})
            if g is None:
                row.append(w)
                continue
            d = g.double() + weight_decay * w
            s["t"] += 1
            if kind == "sgd":
                s["b"] = d if "b" not in s or momentum == 0 else momentum * s["b"] + d
                row.append(w - lr * s["b"])
            else:
                s["m"] = 0.1 * d + 0.9 * s.get("m", 0.0)
                s["v"] = 0.001 * d * d + 0.999 * s.get("v", 0.0)
                m_hat, v_hat = s["m"] / (1 - 0.9 ** s["t"]), s["v"] / (1 - 0.999 ** s["t"])
                row.append(w - lr * m_hat / (v_hat.sqrt() + 1e-8))
        out.append(row)
    return out


def matches_formula(log: StepLog, kind: str, lr: float, momentum: float, weight_decay: float) -> bool:
    """Whether every logged step's weights-after equal ``formula_steps`` (float32 tolerance)."""
    expected = formula_steps(log, kind, lr, momentum, weight_decay)
    return all(
        torch.allclose(a.double(), e, rtol=1e-4, atol=1e-6)
        for after, exp in zip(log.after, expected)
        for a, e in zip(after, exp)
    )
