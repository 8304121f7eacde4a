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
import math
import tempfile
from pathlib import Path
from typing import Any, get_type_hints

import torch

from bpbench.experiments.plan.config import ConfigError, build
from bpbench.experiments.plan.registry import Registry
from bpbench.experiments.plan.study import expand
from bpbench.experiments.run.runner import LoadedTasks
from bpbench.experiments.schedule.execute import execute
from bpbench.experiments.store.run_store import RunStore
from bpbench.learners.base import Learner, NotMeasurable, StepOutput
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.learners.params import RANGE, check_params, choices_of
from bpbench.tasks.base import Split, TaskData

CHECK_SAMPLES = 256  # training samples of the check run (and at most this many val / test samples)
CHECK_MODEL = {"hidden": [32]}
LEARN_STEPS = 50  # updates of the learning probe (check_learns): enough for backprop's defaults to leave chance


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
    """Build ``cls`` on ``data`` and check the interface contract, promise by promise; raises
    ConformanceError naming the first broken one."""
    name = cls.__name__
    _require(dataclasses.is_dataclass(getattr(cls, "Params", None)), f"{name}.Params must be a dataclass")
    params = params if params is not None else cls.Params()
    _require(hasattr(params, "batch_size"), f"{name}.Params needs a batch_size field")
    model = model or ModelSpec(hidden=(32,))
    learner = _make(cls, data, params, 0, model)
    x, y = data.train.x[: learner.batch_size], data.train.y[: learner.batch_size]
    before = _snapshot(learner)
    _check_predict(learner, x, data.info.n_classes)
    _check_steps(learner, x, y, steps)
    after = _snapshot(learner)
    _require(
        any(not torch.equal(before[k], after[k]) for k in before) or not before, f"{name}.train_step changed no weight"
    )
    layers = {n: tuple(m.weight.shape) for n, m in weight_layers(learner.model)} if learner.model is not None else {}
    _check_update_signal(learner, layers)
    _check_exact_layers(learner, layers)
    _check_true_gradient(learner, x, y, layers)
    _check_state_round_trip(learner, _make(cls, data, params, 1, model), x)
    twin = _make(cls, data, params, 0, model)
    for _ in range(steps):
        twin.train_step(x, y)
    _require(torch.equal(twin.predict(x), learner.predict(x)), f"{name}: the same seed does not give identical results")


def _check_predict(learner: Learner, x: torch.Tensor, n_classes: int) -> None:
    """predict: (B, n_classes), deterministic, and no change to the model."""
    name, before = type(learner).__name__, _snapshot(learner)
    p1, p2 = learner.predict(x), learner.predict(x)
    _require(
        tuple(p1.shape) == (len(x), n_classes),
        f"{name}.predict returned {tuple(p1.shape)}, expected ({len(x)}, {n_classes})",
    )
    _require(torch.equal(p1, p2), f"{name}.predict is not deterministic (it must not change state)")
    _require(all(torch.equal(before[k], v) for k, v in _snapshot(learner).items()), f"{name}.predict changed the model")


def _check_steps(learner: Learner, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """train_step returns a StepOutput with a float loss and at least one forward sample per example."""
    name = type(learner).__name__
    for _ in range(steps):
        out = learner.train_step(x, y)
        _require(isinstance(out, StepOutput), f"{name}.train_step must return StepOutput, got {type(out).__name__}")
        _require(
            isinstance(out.loss, float),
            f"{name}.train_step: StepOutput.loss is a {type(out.loss).__name__}, "
            "expected a Python float (e.g. loss.item())",
        )
        _require(out.forward_samples >= len(x), f"{name}: forward_samples {out.forward_samples} < batch {len(x)}")


def _check_layer_shapes(
    name: str, what: str, tensors: dict[str, torch.Tensor], layers: dict[str, tuple[int, ...]]
) -> None:
    """``tensors`` are keyed by connection layers in forward order, each shaped like its weight."""
    _layer_keys(name, what, list(tensors), layers)
    for layer, t in tensors.items():
        _require(
            tuple(t.shape) == layers[layer],
            f"{name}.{what}[{layer}] has shape {tuple(t.shape)}, expected {layers[layer]}",
        )


def _check_update_signal(learner: Learner, layers: dict[str, tuple[int, ...]]) -> None:
    name = type(learner).__name__
    try:
        signal = learner.update_signal()
    except NotMeasurable:
        return  # the run records gradient health as n/a with the reason
    if layers:
        _require(bool(signal), f"{name}.update_signal returned no layers (raise NotMeasurable if it has none)")
        _check_layer_shapes(name, "update_signal", signal, layers)


def _check_exact_layers(learner: Learner, layers: dict[str, tuple[int, ...]]) -> None:
    name, exact = type(learner).__name__, learner.exact_layers()
    _require(all(isinstance(k, str) for k in exact), f"{name}.exact_layers must return layer names, got {exact!r}")
    if layers:
        _require(
            set(exact) <= set(layers),
            f"{name}.exact_layers {sorted(exact)} are not all connection layers {list(layers)}",
        )


def _check_true_gradient(
    learner: Learner, x: torch.Tensor, y: torch.Tensor, layers: dict[str, tuple[int, ...]]
) -> None:
    """true_gradient: keyed and shaped like the weights (or NotMeasurable), and no change of state."""
    name, state_before = type(learner).__name__, _snapshot(learner)
    try:
        reference = learner.true_gradient(x, y)
    except NotMeasurable:
        reference = None
    if reference is not None and layers:
        _check_layer_shapes(name, "true_gradient", reference, layers)
    _require(
        all(torch.equal(state_before[k], v) for k, v in _snapshot(learner).items()),
        f"{name}.true_gradient changed the model's state",
    )


def _check_state_round_trip(learner: Learner, clone: Learner, x: torch.Tensor) -> None:
    """A learner of another seed that loads a deep copy of the state predicts the same."""
    clone.load_state_dict(copy.deepcopy(learner.state_dict()))  # the runner's twin steps load a deep copy
    _require(
        torch.equal(clone.predict(x), learner.predict(x)),
        f"{type(learner).__name__}: load_state_dict(deepcopy(state_dict())) does not reproduce predictions",
    )


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


def chance_accuracy(labels: torch.Tensor, n_classes: int) -> float:
    """Accuracy of always answering the most common class of ``labels`` (at least 1 / n_classes)."""
    counts = torch.bincount(labels.long(), minlength=n_classes)
    return max(float(counts.max()) / max(len(labels), 1), 1.0 / n_classes)


@dataclasses.dataclass(frozen=True)
class Learning:
    """Whether a rule learns at all: test accuracy after ``steps`` updates on the check's training
    samples (batches cycled in order, seed 0) against ``chance``, the most common class's share of
    the same test samples. ``error``: why the probe stopped early (accuracy is then NaN)."""

    accuracy: float
    chance: float
    steps: int
    error: str | None = None

    @property
    def warning(self) -> str | None:
        """A line naming the figure and chance when the accuracy is at or below chance."""
        if self.error is not None:
            return f"the learning probe stopped: {self.error}"
        if self.accuracy > self.chance:
            return None
        return (
            f"test accuracy {self.accuracy:.3f} after {self.steps} updates on the check's training samples is at or "
            f"below chance ({self.chance:.3f}, the most common class's share of the test samples): "
            "the rule does not learn here"
        )


def check_learns(
    cls: type[Learner], data: TaskData, params: Any, model: ModelSpec, samples: int, steps: int = LEARN_STEPS
) -> Learning:
    """``Learning`` of ``cls`` trained for ``steps`` updates on the first ``samples`` training samples.

    A rule that raises during the probe (after passing the contract and the check run) is reported
    in ``Learning.error``, not raised: the probe is a diagnostic beyond the contract."""
    learner = _make(cls, data, params, 0, model)
    x, y = data.train.x[:samples], data.train.y[:samples]
    test_x, test_y = data.test.x[:samples], data.test.y[:samples]
    chance = chance_accuracy(test_y, data.info.n_classes)
    size = min(learner.batch_size, len(x))
    for step in range(steps):
        at = (step * size) % max(len(x) - size + 1, 1)
        try:
            learner.train_step(x[at : at + size], y[at : at + size])
        except Exception as exc:  # any failure of the plugin's own code: reported, as the runner does
            return Learning(math.nan, chance, step, f"update {step + 1} raised {type(exc).__name__}: {exc}")
    accuracy = float((learner.predict(test_x).argmax(1) == test_y).float().mean())
    return Learning(accuracy, chance, steps)


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
    defaults; ``model`` is laid over ``CHECK_MODEL``). Returns the check run's meta plus
    ``learning``: ``check_learns``'s ``Learning`` (a warning when the rule stays at or below
    chance); raises ``ConformanceError`` naming the first
    broken promise (``ConfigError`` for a bad option).
    """
    cls, task_cls = learners.get(learner), tasks.get(task)
    try:
        task_cls().check(task_cls.Params())
    except (ImportError, FileNotFoundError) as exc:  # a missing optional dependency or data file: bad input
        raise ConfigError(f"task {task!r} is unavailable: {exc}") from exc
    model = {**CHECK_MODEL, **(model or {})}
    learner_params = build(cls.Params, params or {}, f"learners.{learner}")
    spec = build(ModelSpec, model, f"learners.{learner}.model")
    data = task_cls().load(task_cls.Params())
    check_learner(cls, data, params=learner_params, model=spec)
    meta = check_run(learner, task, learners, tasks, params=params, model=model, samples=samples)
    return {**meta, "learning": check_learns(cls, data, learner_params, spec, samples)}


RUNNER_OPTIONS = {"batch_size": "the runner's minibatch size (train_step updates on the batch it is given)"}
OPTION_STEPS = 3
OPTIONS_MODEL = {"hidden": [16, 16]}  # two hidden layers: options acting between hidden layers show
NEGLIGIBLE = 1e-3  # a relative change below this is no effect (e.g. a uniform gradient scale under Adam)


@dataclasses.dataclass(frozen=True)
class OptionEffect:
    """One option's effect on the first ``OPTION_STEPS`` updates (same seed, same batch).

    value: the non-default value tried (None: none could be built, see ``note``); change:
    ‖Δw(value) − Δw(default)‖ / ‖Δw(default)‖ over all weights (Δw: the weights' change over the
    steps; predictions instead for a rule without a model; inf where the model itself changed
    shape); ``with_``: another option's value it needed to change anything (e.g. momentum:
    optimizer = 'sgd'); note: why it was not tried, or what else was seen.
    """

    option: str
    value: Any
    change: float | None
    with_: str = ""
    note: str = ""

    @property
    def warning(self) -> str | None:
        """A line naming an option that changed nothing, or next to nothing, else None."""
        if self.option in RUNNER_OPTIONS or self.value is None or self.change is None:
            return None  # not an update option, or not tried (the note says why)
        if not self.change:
            return f"option {self.option} = {self.value!r} changed nothing in {OPTION_STEPS} updates"
        if self.change < NEGLIGIBLE:
            return (
                f"option {self.option} = {self.value!r} changed the updates by only {self.change:.2g} "
                f"(under {NEGLIGIBLE:g}) in {OPTION_STEPS} updates"
            )
        return None


def candidate_values(field: dataclasses.Field[Any], hint: Any, default: Any) -> list[Any]:
    """Non-default values to try for one Params field, the closest to its declared range or choices first."""
    choices = choices_of(hint)
    if choices is not None:
        return [c for c in choices if c != default and c is not None]
    if isinstance(default, bool):
        return [not default]
    rule = field.metadata.get(RANGE)
    if default is None:
        return [1.0, 2.0, 0.5, 10.0, 0.1]
    if isinstance(default, int):
        return [
            v for v in dict.fromkeys([2 * default, default + 1, default - 1, default // 2, 4, 10, 1]) if v != default
        ]
    if isinstance(default, float):
        base = [2 * default, default / 2, 10 * default, default / 10, -default] if default else [0.1, 0.01, 1.0]
        bounds = [b for b in (getattr(rule, k, None) for k in ("gt", "ge", "lt", "le")) if isinstance(b, float | int)]
        return [v for v in dict.fromkeys([*base, *(b + 0.5 * (default - b) for b in bounds)]) if v != default]
    return []


def _option_params(cls: type[Learner], base: Any, spec: ModelSpec, changes: dict[str, Any]) -> Any:
    """``base`` with ``changes`` if the rule accepts them (Params checks, check_model), else the
    ValueError or TypeError that refused them."""
    try:
        params = dataclasses.replace(base, **changes)
        check_params(params)
        cls.check_model(spec, params)
    except (ValueError, TypeError) as exc:
        return exc
    return params


def _updates(cls: type[Learner], data: TaskData, params: Any, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The weights' change over ``OPTION_STEPS`` steps from seed 0 on the first batch (predictions
    under key "predict" for a rule without a model)."""
    learner = _make(cls, data, params, 0, spec)
    x, y = data.train.x[: learner.batch_size], data.train.y[: learner.batch_size]
    start = _snapshot(learner)
    for _ in range(OPTION_STEPS):
        learner.train_step(x, y)
    end = _snapshot(learner)
    if not end:
        return {"predict": learner.predict(x).detach()}
    return {k: (end[k] - start[k]).double() for k in end if end[k].is_floating_point()}


def _built_updates(
    cls: type[Learner], data: TaskData, params: Any, spec: ModelSpec
) -> dict[str, torch.Tensor] | Exception:
    """``_updates``, or the refusal: the ValueError or TypeError of ``_option_params`` (passed in
    as ``params``) or of the rule's ``setup`` on this task."""
    if isinstance(params, Exception):
        return params
    try:
        return _updates(cls, data, params, spec)
    except ValueError as exc:
        return exc


def _change(updates: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """‖u − r‖ / ‖r‖ over every tensor; inf when the tensors differ in name or shape."""
    if updates.keys() != reference.keys() or any(updates[k].shape != reference[k].shape for k in updates):
        return math.inf
    diff = math.sqrt(sum(float((updates[k] - reference[k]).square().sum()) for k in updates))
    size = math.sqrt(sum(float(reference[k].square().sum()) for k in reference))
    return diff / size if size else (math.inf if diff else 0.0)


def _options_model(cls: type[Learner], data: TaskData, model: ModelSpec | None) -> ModelSpec:
    """The model the options are tried on: the caller's, else two hidden layers, else the check's model,
    else a linear model (the first the rule builds on ``data`` with its defaults)."""
    if model is not None:
        return model
    for hidden in (OPTIONS_MODEL["hidden"], CHECK_MODEL["hidden"]):
        spec = ModelSpec(hidden=tuple(hidden))
        try:
            _make(cls, data, cls.Params(), 0, spec)
            return spec
        except ValueError:
            continue
    return ModelSpec(hidden=())


def check_options(
    cls: type[Learner], data: TaskData, params: Any | None = None, model: ModelSpec | None = None
) -> list[OptionEffect]:
    """Each declared option of ``cls.Params`` at a non-default value (from its range or choices) for
    ``OPTION_STEPS`` updates against the defaults' (or ``params``'); per option, how much the
    updates changed. An option that changes nothing alone is retried with each other choice-type
    option flipped (momentum needs optimizer = 'sgd'), and reported with it."""
    base = params if params is not None else cls.Params()
    spec = _options_model(cls, data, model)
    hints = get_type_hints(cls.Params)
    fields = dataclasses.fields(cls.Params)
    reference = _updates(cls, data, base, spec)
    partners = {f.name: candidate_values(f, hints[f.name], getattr(base, f.name)) for f in fields}
    partners = {
        k: v for k, v in partners.items() if choices_of(hints[k]) is not None or isinstance(getattr(base, k), bool)
    }
    return [_option_effect(cls, data, base, spec, f, hints[f.name], reference, partners) for f in fields]


def _option_effect(
    cls: type[Learner],
    data: TaskData,
    base: Any,
    spec: ModelSpec,
    field: dataclasses.Field[Any],
    hint: Any,
    reference: dict[str, torch.Tensor],
    partners: dict[str, list[Any]],
) -> OptionEffect:
    """One option's ``OptionEffect`` (see ``check_options``)."""
    name = field.name
    if name in RUNNER_OPTIONS:
        return OptionEffect(name, getattr(base, name), None, note=RUNNER_OPTIONS[name])
    values = candidate_values(field, hint, getattr(base, name))
    if not values:
        return OptionEffect(name, None, None, note=f"no other value is allowed ({getattr(base, name)!r} only)")
    refusals = []
    for value in values:
        updates = _built_updates(cls, data, _option_params(cls, base, spec, {name: value}), spec)
        if not isinstance(updates, Exception):
            break
        refusals.append(str(updates))
    else:
        return OptionEffect(name, None, None, note=f"every other value is refused: {refusals[0]}")
    change = _change(updates, reference)
    if change >= NEGLIGIBLE:
        return OptionEffect(name, value, change)
    for other, choices in partners.items():
        for v in choices if other != name else []:
            paired = _built_updates(cls, data, _option_params(cls, base, spec, {other: v, name: value}), spec)
            alone = _built_updates(cls, data, _option_params(cls, base, spec, {other: v}), spec)
            if isinstance(paired, Exception) or isinstance(alone, Exception):
                continue
            if (with_other := _change(paired, alone)) >= NEGLIGIBLE:
                return OptionEffect(name, value, with_other, with_=f"{other} = {v!r}")
    return OptionEffect(name, value, change)


def options_report(learner: str, effects: list[OptionEffect], spec_hidden: tuple[int, ...]) -> list[str]:
    """The lines ``bpbench check --options`` prints: one per option, then one warning per silent option."""
    lines = [
        f"{learner} options ({OPTION_STEPS} updates from one seed on one batch, model hidden = {list(spec_hidden)}; "
        "change = |dw(option) - dw(default)| / |dw(default)|):"
    ]
    width = max(len(e.option) for e in effects)
    for e in effects:
        if e.option in RUNNER_OPTIONS:
            lines.append(f"  {e.option:{width}s}  not an update option: {e.note}")
        elif e.value is None:
            lines.append(f"  {e.option:{width}s}  not tried: {e.note}")
        else:
            what = "changed nothing" if not e.change else f"changed the updates by {e.change:.3g}"
            what += "" if e.change is None or e.change >= NEGLIGIBLE else f" (under {NEGLIGIBLE:g}: no effect)"
            lines.append(f"  {e.option:{width}s}  = {e.value!r}: {what}" + (f" (with {e.with_})" if e.with_ else ""))
    lines += [f"warning: {e.warning}" for e in effects if e.warning]
    return lines


def check_option_lines(
    learner: str,
    task: str,
    learners: Registry,
    tasks: Registry,
    params: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> list[str]:
    """``bpbench check --options``: ``check_options`` of registered ``learner`` on ``task``, as report lines
    (the options' base is the defaults with ``params`` laid over; ``model`` as in ``check``, else
    ``_options_model``'s choice)."""
    cls, task_cls = learners.get(learner), tasks.get(task)
    base = build(cls.Params, params or {}, f"learners.{learner}")
    data = task_cls().load(task_cls.Params())
    spec = _options_model(cls, data, build(ModelSpec, {**CHECK_MODEL, **model}, "model") if model else None)
    effects = check_options(cls, data, base, spec)
    return options_report(learner, effects, spec.hidden)
