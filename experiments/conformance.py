"""Conformance checks for a learner class: what the runner relies on, checked on real data.

``check_learner(cls, data)`` raises ``ConformanceError`` naming the first broken promise.
Third-party learners can run it on themselves (``bpbench check NAME``); the test suite
runs it on every registered learner.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bpbench.learners.base import Learner, NotMeasurable, StepOutput
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.tasks.base import TaskData


class ConformanceError(AssertionError):
    """A learner breaks the interface contract."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConformanceError(message)


def _snapshot(learner: Learner) -> dict[str, torch.Tensor]:
    model = learner.model
    return {k: v.detach().clone() for k, v in model.state_dict().items()} if model is not None else {}


def _make(cls: type[Learner], data: TaskData, params: Any, seed: int, model: ModelSpec) -> Learner:
    torch.manual_seed(seed)
    return cls(model, data.info, params, torch.Generator().manual_seed(seed), torch.device("cpu"))


def check_learner(cls: type[Learner], data: TaskData, params: Any | None = None,
                  model: ModelSpec | None = None, steps: int = 3) -> None:
    """Build ``cls`` on ``data`` and check the interface contract; raises ConformanceError."""
    name = cls.__name__
    _require(dataclasses.is_dataclass(getattr(cls, "Params", None)), f"{name}.Params must be a dataclass")
    params = params if params is not None else cls.Params()
    _require(hasattr(params, "batch_size"), f"{name}.Params needs a batch_size field")
    _require(cls.kind in ("gradient", "population"), f"{name}.kind = {cls.kind!r}: allowed 'gradient', 'population'")
    model = model or ModelSpec(hidden=(32,))
    learner = _make(cls, data, params, 0, model)
    x, y = data.train.x[: learner.batch_size], data.train.y[: learner.batch_size]

    before = _snapshot(learner)
    p1, p2 = learner.predict(x), learner.predict(x)
    _require(tuple(p1.shape) == (len(x), data.info.n_classes),
             f"{name}.predict returned {tuple(p1.shape)}, expected ({len(x)}, {data.info.n_classes})")
    _require(torch.equal(p1, p2), f"{name}.predict is not deterministic (it must not change state)")
    _require(all(torch.equal(before[k], v) for k, v in _snapshot(learner).items()), f"{name}.predict changed the model")

    for _ in range(steps):
        out = learner.train_step(x, y)
        _require(isinstance(out, StepOutput), f"{name}.train_step must return StepOutput, got {type(out).__name__}")
        _require(out.forward_samples >= len(x), f"{name}: forward_samples {out.forward_samples} < batch {len(x)}")
    after = _snapshot(learner)
    _require(any(not torch.equal(before[k], after[k]) for k in before) or not before, f"{name}.train_step changed no weight")

    signal = learner.update_signal()
    if learner.model is not None:
        layers = {n: tuple(m.weight.shape) for n, m in weight_layers(learner.model)}
        _require(list(signal) == list(layers), f"{name}.update_signal keys {list(signal)} != weight layers {list(layers)}")
        for layer, t in signal.items():
            _require(tuple(t.shape) == layers[layer], f"{name}.update_signal[{layer}] has shape {tuple(t.shape)}, expected {layers[layer]}")
        state_before = _snapshot(learner)
        try:
            reference = learner.true_gradient(x, y)
        except NotMeasurable:  # the runner records the alignment as n/a with the reason
            reference = None
        _require(reference is None or list(reference) == list(layers),
                 f"{name}.true_gradient keys {list(reference or {})} != {list(layers)}")
        _require(all(torch.equal(state_before[k], v) for k, v in _snapshot(learner).items()),
                 f"{name}.true_gradient changed the model's state")

    state = learner.state_dict()
    clone = _make(cls, data, params, 1, model)
    clone.load_state_dict(state)
    _require(torch.equal(clone.predict(x), learner.predict(x)), f"{name}: load_state_dict(state_dict()) does not reproduce predictions")

    twin = _make(cls, data, params, 0, model)
    for _ in range(steps):
        twin.train_step(x, y)
    _require(torch.equal(twin.predict(x), learner.predict(x)), f"{name}: the same seed does not give identical results")
