"""Conformance checks for a learner: what the runner relies on, checked on real data.

Two parts, both run by ``bpbench check NAME --task T`` (``check``):

- ``check_learner(cls, data)``: the interface contract, promise by promise (predict's shape
  and purity, StepOutput, update_signal and true_gradient keys and shapes, exact_layers,
  state round trip through a deep copy, same seed same results);
- ``check_run(name, task, ...)``: a 1-epoch run of the learner on a slice of the task
  through the code ``bpbench run`` uses (study expansion, ``execute``, ``runner.run``: the
  twin-step instruments, the training clock, evaluation, inference cost), with gradient
  health and alignment sampled at every step.

Each raises ``ConformanceError`` naming the first broken promise. A measurement that does
not apply to the learner is not a failure: the run lists it as n/a with its reason.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch

from bpbench.experiments.plan.config import ConfigError, build
from bpbench.experiments.plan.registry import Registry
from bpbench.experiments.plan.study import expand
from bpbench.experiments.run.runner import LoadedTasks
from bpbench.experiments.schedule.execute import execute
from bpbench.experiments.store.run_store import RunStore
from bpbench.learners.base import Learner, NotMeasurable, StepOutput
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.tasks.base import Split, TaskData

CHECK_SAMPLES = 256  # training samples of the check run (and at most this many val / test samples)
CHECK_MODEL = {"hidden": [32]}


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


def _layer_keys(name: str, what: str, keys: list[str], layers: dict[str, tuple[int, ...]]) -> None:
    """``keys`` name connection layers, in forward order (a subset: frozen layers may be absent)."""
    unknown = [k for k in keys if k not in layers]
    _require(not unknown, f"{name}.{what} keys {unknown} are not connection layers of the model {list(layers)}")
    _require(
        keys == [k for k in layers if k in keys], f"{name}.{what} keys {keys} are not in forward order {list(layers)}"
    )


def check_learner(
    cls: type[Learner], data: TaskData, params: Any | None = None, model: ModelSpec | None = None, steps: int = 3
) -> None:
    """Build ``cls`` on ``data`` and check the interface contract; raises ConformanceError."""
    name = cls.__name__
    _require(dataclasses.is_dataclass(getattr(cls, "Params", None)), f"{name}.Params must be a dataclass")
    params = params if params is not None else cls.Params()
    _require(hasattr(params, "batch_size"), f"{name}.Params needs a batch_size field")
    model = model or ModelSpec(hidden=(32,))
    learner = _make(cls, data, params, 0, model)
    x, y = data.train.x[: learner.batch_size], data.train.y[: learner.batch_size]

    before = _snapshot(learner)
    p1, p2 = learner.predict(x), learner.predict(x)
    _require(
        tuple(p1.shape) == (len(x), data.info.n_classes),
        f"{name}.predict returned {tuple(p1.shape)}, expected ({len(x)}, {data.info.n_classes})",
    )
    _require(torch.equal(p1, p2), f"{name}.predict is not deterministic (it must not change state)")
    _require(all(torch.equal(before[k], v) for k, v in _snapshot(learner).items()), f"{name}.predict changed the model")

    for _ in range(steps):
        out = learner.train_step(x, y)
        _require(isinstance(out, StepOutput), f"{name}.train_step must return StepOutput, got {type(out).__name__}")
        _require(
            isinstance(out.loss, float),
            f"{name}.train_step: StepOutput.loss is a {type(out.loss).__name__}, "
            "expected a Python float (e.g. loss.item())",
        )
        _require(out.forward_samples >= len(x), f"{name}: forward_samples {out.forward_samples} < batch {len(x)}")
    after = _snapshot(learner)
    _require(
        any(not torch.equal(before[k], after[k]) for k in before) or not before, f"{name}.train_step changed no weight"
    )

    layers = {n: tuple(m.weight.shape) for n, m in weight_layers(learner.model)} if learner.model is not None else {}
    try:
        signal = learner.update_signal()
    except NotMeasurable:
        signal = None  # the run records gradient health as n/a with the reason
    if signal is not None and layers:
        _require(bool(signal), f"{name}.update_signal returned no layers (raise NotMeasurable if it has none)")
        _layer_keys(name, "update_signal", list(signal), layers)
        for layer, t in signal.items():
            _require(
                tuple(t.shape) == layers[layer],
                f"{name}.update_signal[{layer}] has shape {tuple(t.shape)}, expected {layers[layer]}",
            )
    exact = learner.exact_layers()
    _require(all(isinstance(k, str) for k in exact), f"{name}.exact_layers must return layer names, got {exact!r}")
    if layers:
        _require(
            set(exact) <= set(layers),
            f"{name}.exact_layers {sorted(exact)} are not all connection layers {list(layers)}",
        )
    state_before = _snapshot(learner)
    try:
        reference = learner.true_gradient(x, y)
    except NotMeasurable:
        reference = None
    if reference is not None and layers:
        _layer_keys(name, "true_gradient", list(reference), layers)
        for layer, t in reference.items():
            _require(
                tuple(t.shape) == layers[layer],
                f"{name}.true_gradient[{layer}] has shape {tuple(t.shape)}, expected {layers[layer]}",
            )
    _require(
        all(torch.equal(state_before[k], v) for k, v in _snapshot(learner).items()),
        f"{name}.true_gradient changed the model's state",
    )

    state = learner.state_dict()
    clone = _make(cls, data, params, 1, model)
    clone.load_state_dict(copy.deepcopy(state))  # the runner's twin steps load a deep copy
    _require(
        torch.equal(clone.predict(x), learner.predict(x)),
        f"{name}: load_state_dict(deepcopy(state_dict())) does not reproduce predictions",
    )

    twin = _make(cls, data, params, 0, model)
    for _ in range(steps):
        twin.train_step(x, y)
    _require(torch.equal(twin.predict(x), learner.predict(x)), f"{name}: the same seed does not give identical results")


def _slice(split: Split, n: int) -> Split:
    return Split(split.x[:n], split.y[:n])


def check_run(
    learner: str,
    task: str,
    learners: Registry,
    tasks: Registry,
    *,
    params: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    samples: int = CHECK_SAMPLES,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """One epoch of registered ``learner`` on the first ``samples`` training samples of ``task``
    through the runner, gradient health at every step; returns the run's meta (status ok,
    ``unmeasured``: what is n/a and why). Raises ``ConformanceError`` if the run fails."""
    if samples <= 0:
        raise ValueError(f"samples = {samples}: must be a positive integer")
    section: dict[str, Any] = {**(params or {}), "model": model if model is not None else CHECK_MODEL}
    raw = {
        "seeds": 1,
        "tasks": [task],
        "budget": {"epochs": 1},
        "schedule": {"eval_every": 1, "health_every": 1},
        "learners": {learner: section},
    }
    spec = expand("check", raw, learners, tasks).runs[0]
    cache = LoadedTasks()
    full = cache.get(spec, tasks)
    cache.put(
        spec, TaskData(full.info, _slice(full.train, samples), _slice(full.val, samples), _slice(full.test, samples))
    )
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder))
        outcome = execute(spec, store, learners, tasks, device or torch.device("cpu"), cache, lambda event: None)
        meta = store.metas()[0]
    _require(outcome.status == "ok", f"a 1-epoch run of {learner} on {task} through the runner failed: {outcome.error}")
    return meta


def check(
    learner: str,
    task: str,
    learners: Registry,
    tasks: Registry,
    samples: int = CHECK_SAMPLES,
    params: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``bpbench check``: the contract (``check_learner`` on the loaded task), then ``check_run``.

    ``params`` / ``model``: learner and model options as in a study (default: the learner's
    defaults; ``model`` is laid over ``CHECK_MODEL``). Returns the check run's meta; raises ``ConformanceError``
    naming the first broken promise (``ConfigError`` for a bad option).
    """
    cls, task_cls = learners.get(learner), tasks.get(task)
    try:
        task_cls().check(task_cls.Params())
    except (ImportError, FileNotFoundError) as exc:  # a missing optional dependency or data file: bad input
        raise ConfigError(f"task {task!r} is unavailable: {exc}") from exc
    model = {**CHECK_MODEL, **(model or {})}
    learner_params = build(cls.Params, params or {}, f"learners.{learner}")
    spec = build(ModelSpec, model, f"learners.{learner}.model")
    check_learner(cls, task_cls().load(task_cls.Params()), params=learner_params, model=spec)
    return check_run(learner, task, learners, tasks, params=params, model=model, samples=samples)
