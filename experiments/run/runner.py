"""The training loop: the runner owns the loop, budget, evaluation schedule, clock and seeds.

``run(spec, ...)`` trains one learner on one task and returns tidy rows
``(run_id, epoch, step, split, metric, layer, value)``, a summary, and what could not be
measured (metric -> reason; the executor stores it as ``meta["unmeasured"]``). Only a
non-finite training loss or a broken interface promise ends a run with an error (the
executor records it and moves on); a measurement that does not apply to the learner, or is
undefined at one sample (a zero true gradient, say), is recorded as n/a with its reason.

The clock (``train_seconds``, and the ``max_seconds`` budget) times the learner's
``train_step`` calls only, synchronized on CUDA; everything else runs off it:

- FLOPs (once per minibatch shape: a step's FLOPs depend only on shapes) and peak memory
  (the first step) are measured on a *twin*: a second learner built from the same spec,
  loaded with a deep copy of ``learner.state_dict()``, taking the same minibatch's step
  under the instrument while every random stream is forked (torch CPU and the run's device,
  Python, numpy), so the twin changes nothing the learner will see. The twin is then
  dropped and the learner takes its own, uninstrumented, timed step. This relies on
  ``load_state_dict(state_dict())`` reproducing the learner, which ``bpbench check`` verifies.
  (The twin warms caches the first real step would otherwise fill; that one-off start-up
  cost is not training and stays off the clock too.)
- ``true_gradient`` (before a sampled step, on the same minibatch, every random stream
  forked so the step then draws the same dropout masks and noise), gradient health and the
  per-layer comparisons with the true gradient the measurement catalog lists (after it:
  ``plan/catalog.py``'s ``LAYER_COMPARISONS``, cosine and projection coefficient), diagnostics
  and evaluation.

Evaluation (epoch 0, every ``eval_every`` epochs and the last): accuracy and mean
cross-entropy on the whole validation and test splits, and on a fixed stratified subset of
the training split as large as the test split (``train_eval_split``; the summary's
``train_eval_samples`` says how many), in chunks of ``EVAL_CHUNK``; then the learner's
``evaluation_metrics`` and the inference cost on the first ``DIAGNOSTIC_BATCH`` test samples.
Where each run's wall time went is in its ``phase_seconds`` (``Phases``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bpbench.experiments.plan.catalog import LAYER_COMPARISONS, health_metrics
from bpbench.experiments.plan.config import build
from bpbench.experiments.plan.registry import Registry
from bpbench.experiments.plan.spec import Budget, RunSpec, Schedule, canonical_json
from bpbench.experiments.run.energy import COST_METRICS, cost_rows
from bpbench.experiments.run.probes import (
    COMPARISONS,
    MetricError,
    Unmeasured,
    count_flops,
    forked_rng,
    gradient_norms,
    mean_outside_exact,
    norm_ratio,
    peak_step_memory,
    state_bytes,
)
from bpbench.learners.base import Learner, NotMeasurable
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.tasks.base import Split, TaskData, stratified_subset
from bpbench.tasks.cache import load_cached

EVAL_CHUNK = 2048
DIAGNOSTIC_BATCH = 256  # test samples passed to Learner.evaluation_metrics
GATHER_BLOCK = 32  # minibatches whose samples are gathered from the training split at once
HEALTH_METRICS = health_metrics()  # the measurement catalog's (plan/catalog.py)
COMPARED = tuple(name for pair in LAYER_COMPARISONS for name in pair)  # n/a all together without a true gradient
T = TypeVar("T")


class NonFiniteLoss(FloatingPointError):
    """Training diverged: the step's loss is NaN or infinite."""


@dataclass
class LoadedTasks:
    """Loaded tasks of one worker process, keyed by (task name, task options)."""

    data: dict[str, TaskData] = field(default_factory=dict)

    @staticmethod
    def key(spec: RunSpec) -> str:
        return canonical_json([spec.task, spec.task_params])

    def put(self, spec: RunSpec, data: TaskData) -> None:
        """Use ``data`` for every run of ``spec``'s task and task options (``bpbench check``'s slice)."""
        self.data[self.key(spec)] = data

    def get(self, spec: RunSpec, tasks: Registry) -> TaskData:
        key = self.key(spec)
        if key not in self.data:
            task_cls = tasks.get(spec.task)
            params = build(task_cls.Params, spec.task_params, f"tasks.{spec.task_label}")
            self.data[key] = load_cached(task_cls(), params)
        return self.data[key]


PHASES = ("setup", "train", "twins", "health", "evaluation", "other")


@dataclass
class Phases:
    """Wall seconds (``time.perf_counter``) a run spends in each of its parts, for the run's
    metadata (``meta["phase_seconds"]``): setup (task data, learner, data to the device), train
    (the ``train_step`` calls, synchronized: the training clock's regions), twins (FLOPs and
    peak memory on twin learners), health (true gradient, gradient health, diagnostics),
    evaluation (accuracy and loss of every split, evaluation metrics, inference cost), other
    (everything else: minibatch indexing, bookkeeping)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0


@dataclass
class RunResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    unmeasured: dict[str, str] = field(default_factory=dict)  # metric -> why it is n/a (meta["unmeasured"])
    phase_seconds: dict[str, float] = field(default_factory=dict)  # Phases.seconds (meta["phase_seconds"])


def evaluate(learner: Learner, split: Split, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the learner's predictions on a whole split, in chunks of
    ``EVAL_CHUNK``; the sums stay on ``device`` (the loss's in float64) until the split is done,
    so a GPU is synchronized once per split, not twice per chunk."""
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(split), EVAL_CHUNK):
        x = split.x[start : start + EVAL_CHUNK].to(device)
        y = split.y[start : start + EVAL_CHUNK].to(device)
        logits = learner.predict(x)
        if logits.shape != (x.shape[0], learner.task.n_classes):
            raise ValueError(
                f"predict returned shape {tuple(logits.shape)}, expected ({x.shape[0]}, {learner.task.n_classes})"
            )
        loss_sum = loss_sum + F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct = correct + (logits.argmax(dim=1) == y).sum()
    return int(correct) / len(split), float(loss_sum) / len(split)


def on_device(split: Split, device: torch.device) -> Split:
    """``split`` moved to ``device`` once (a no-op on the CPU), for the evaluations of a whole run."""
    return Split(split.x.to(device), split.y.to(device))


def train_eval_split(data: TaskData) -> Split:
    """What train accuracy and loss are measured on: a fixed stratified subset of the training
    split with as many samples as the test split (``tasks.base.stratified_subset``, seed 0: the
    same samples for every learner, seed and epoch), or the whole training split when it is no
    larger. The train/test gap then compares two accuracies of equal sample size; evaluating
    the whole training split every epoch cost a third of an MLP's training time on mnist5k."""
    train, n = data.train, len(data.test)
    index = torch.from_numpy(stratified_subset(train.y.numpy(), n))
    return train if len(index) == len(train) else Split(train.x[index], train.y[index])


def minibatches(
    x: Tensor, y: Tensor, order: Tensor, batch: int, block: int = GATHER_BLOCK
) -> Iterator[tuple[Tensor, Tensor]]:
    """Minibatches ``(x[i], y[i])`` for consecutive ``batch``-sized slices ``i`` of ``order``.

    The samples of ``block`` minibatches are gathered at once and each minibatch is a view of
    that block: one memory-bound gather per block instead of one per step (the same values).
    """
    for start in range(0, len(order), batch * block):
        index = order[start : start + batch * block]
        xs, ys = x.index_select(0, index), y.index_select(0, index)
        for i in range(0, len(index), batch):
            yield xs[i : i + batch], ys[i : i + batch]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_learner(spec: RunSpec, data: TaskData, learners: Registry, device: torch.device) -> Learner:
    """The run's learner, seeded from the run's seed (global RNG too, for dropout)."""
    learner_cls = learners.get(spec.learner)
    params = build(learner_cls.Params, spec.params, f"learners.{spec.label}")
    model = build(ModelSpec, spec.model, f"learners.{spec.label}.model")
    torch.manual_seed(spec.seed)
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)
    return learner_cls(model, data.info, params, generator, device)


def attempt(unmeasured: Unmeasured, metrics: tuple[str, ...], fn: Callable[[], T]) -> T | None:
    """``fn()``, or None when it raises ``NotMeasurable`` (noted as the reason for each of ``metrics``)."""
    try:
        return fn()
    except NotMeasurable as exc:
        for metric in metrics:
            unmeasured.note(metric, str(exc) or type(exc).__name__)
        return None


def on_twin(
    spec: RunSpec,
    data: TaskData,
    learners: Registry,
    device: torch.device,
    learner: Learner,
    x: Tensor,
    y: Tensor,
    instrument: Callable[[Callable[[], object]], tuple[object, T]],
) -> T:
    """The figure ``instrument`` takes of one ``train_step(x, y)`` of a copy of ``learner``.

    The copy is built from ``spec`` and loaded with a deep copy of the learner's state, with
    every random stream forked: the learner and the global RNGs are left exactly as they were.
    """
    state = copy.deepcopy(learner.state_dict())
    with forked_rng(device):
        twin = build_learner(spec, data, learners, device)
        twin.load_state_dict(state)
        _, figure = instrument(lambda: twin.train_step(x, y))
    return figure


def _checked_ratio(learner: Learner, norms: dict[str, float], order: list[str]) -> float:
    """The first/last norm ratio, unless the learner says it describes its estimator (NotMeasurable)."""
    learner.check_norm_ratio()
    return norm_ratio(norms, order)


def health_rows(
    learner: Learner, reference: dict[str, Tensor] | None, exact: frozenset[str], unmeasured: Unmeasured
) -> list[tuple[str, str, float]]:
    """Gradient health and the comparisons with the true gradient of the step just taken: (metric, layer, value) rows.

    ``reference``: the true gradient taken before the step, or None when it is n/a (noted).
    """
    signal = attempt(unmeasured, HEALTH_METRICS, learner.update_signal)
    if signal is None:
        return []
    if not signal:
        for metric in HEALTH_METRICS:
            unmeasured.note(metric, "update_signal() returned no layers")
        return []
    rows: list[tuple[str, str, float]] = []
    norms, missing = gradient_norms(signal)
    for reason in missing.values():
        unmeasured.note("grad_norm", reason)
    rows += [("grad_norm", layer, value) for layer, value in norms.items()]
    model = learner.model
    order = ([n for n, _ in weight_layers(model)] if model is not None else []) or list(signal)
    ratio = attempt(unmeasured, ("grad_norm_ratio",), lambda: _checked_ratio(learner, norms, order))
    if ratio is not None:
        rows.append(("grad_norm_ratio", "", ratio))
    if reference is None:
        return rows
    for metric, mean_metric in LAYER_COMPARISONS:  # cosine, projection coefficient, ...: the catalog's
        values, missing = COMPARISONS[metric](signal, reference)
        for reason in missing.values():
            unmeasured.note(metric, reason)
        rows += [(metric, layer, value) for layer, value in values.items()]
        mean = attempt(unmeasured, (mean_metric,), partial(mean_outside_exact, values, exact))
        if mean is not None:
            rows.append((mean_metric, "", mean))
    return rows


@dataclass
class Counts:
    """What the run has spent so far: the training clock (seconds), FLOPs, samples, single-sample
    forward passes and steps."""

    clock: float = 0.0
    flops: int = 0
    samples: int = 0
    forward_samples: int = 0
    step: int = 0


@dataclass
class Training:
    """One run in progress: its inputs, loaded data and learner, what it spent, and its rows.

    ``start`` loads the data and builds the learner; ``evaluate_all``, ``take_step`` and
    ``finish`` are the steps ``run`` takes, in that order.
    """

    spec: RunSpec
    learners: Registry
    device: torch.device
    budget: Budget
    schedule: Schedule
    data: TaskData
    learner: Learner
    exact: frozenset[str]
    train_x: Tensor
    train_y: Tensor
    probe: Tensor  # the first DIAGNOSTIC_BATCH test samples (evaluation metrics, inference cost)
    eval_splits: list[tuple[str, Split]]
    phases: Phases
    counts: Counts = field(default_factory=Counts)
    rows: list[dict[str, Any]] = field(default_factory=list)
    unmeasured: Unmeasured = field(default_factory=Unmeasured)
    flops_by_shape: dict[tuple[int, ...], int] = field(default_factory=dict)
    peak_memory: int | None = None
    stopped_by: str = "epochs"

    @classmethod
    def start(
        cls, spec: RunSpec, learners: Registry, tasks: Registry, device: torch.device, cache: LoadedTasks | None
    ) -> Training:
        """The run's setup phase: task data, learner, data on the device."""
        phases = Phases()
        budget = build(Budget, spec.budget, "budget")
        schedule = build(Schedule, spec.schedule, "schedule")
        with phases("setup"):
            data = (cache or LoadedTasks()).get(spec, tasks)
            learner = build_learner(spec, data, learners, device)
            splits = (("train", train_eval_split(data)), ("val", data.val), ("test", data.test))
            return cls(
                spec,
                learners,
                device,
                budget,
                schedule,
                data,
                learner,
                exact=frozenset(learner.exact_layers()),
                train_x=data.train.x.to(device),
                train_y=data.train.y.to(device),
                probe=data.test.x[:DIAGNOSTIC_BATCH].to(device),
                eval_splits=[(name, on_device(split, device)) for name, split in splits],
                phases=phases,
            )

    def record(self, epoch: int, split: str, metric: str, value: float, layer: str = "") -> None:
        """One tidy row at the current step."""
        self.rows.append(
            {
                "run_id": self.spec.run_id,
                "epoch": epoch,
                "step": self.counts.step,
                "split": split,
                "metric": metric,
                "layer": layer,
                "value": float(value),
            }
        )

    def evaluate_all(self, epoch: int) -> None:
        """Accuracy and loss of every split, the counts so far, evaluation metrics and inference cost."""
        with self.phases("evaluation"):
            for name, split in self.eval_splits:
                acc, loss = evaluate(self.learner, split, self.device)
                self.record(epoch, name, "accuracy", acc)
                self.record(epoch, name, "loss", loss)
            c = self.counts
            counts = [
                ("train_seconds", c.clock),
                ("train_flops", c.flops),
                ("train_samples", c.samples),
                ("forward_samples", c.forward_samples),
            ]
            for metric, value in counts:
                if metric not in self.unmeasured.reasons:
                    self.record(epoch, "train", metric, value)
            learner, probe, unmeasured = self.learner, self.probe, self.unmeasured
            extra = attempt(unmeasured, ("evaluation_metrics",), lambda: learner.evaluation_metrics(probe)) or []
            costs = attempt(unmeasured, COST_METRICS, lambda: cost_rows(learner, probe)) or []
            for metric, layer, value in [*extra, *costs]:
                self.record(epoch, "test", metric, value, layer)

    def measure_on_twins(self, x: Tensor, y: Tensor) -> None:
        """FLOPs of a step of this minibatch shape (once per shape) and peak memory (once), on twins."""
        spec, data, learners, device, learner = self.spec, self.data, self.learners, self.device, self.learner
        shape = tuple(x.shape)
        if shape not in self.flops_by_shape:
            with self.phases("twins"):
                self.flops_by_shape[shape] = on_twin(spec, data, learners, device, learner, x, y, count_flops)
            if self.flops_by_shape[shape] == 0:
                reason = "the FLOP counter (torch.utils.flop_counter) saw no counted operation in train_step"
                if self.budget.flops is not None:
                    raise MetricError(f"budget.flops = {self.budget.flops:g} cannot be enforced: {reason}")
                self.unmeasured.note("train_flops", reason)
        if self.peak_memory is None:
            with self.phases("twins"):
                self.peak_memory = on_twin(
                    spec, data, learners, device, learner, x, y, lambda fn: peak_step_memory(fn, device)
                )

    def timed_step(self, x: Tensor, y: Tensor, epoch: int, clock_fn: Callable[[], float]) -> None:
        """The learner's own ``train_step``, on the training clock; counts it; a non-finite loss ends the run."""
        p0 = time.perf_counter()  # the train phase (Phases), inlined: it runs every step
        _sync(self.device)
        t0 = clock_fn()
        out = self.learner.train_step(x, y)
        _sync(self.device)
        c = self.counts
        c.clock += clock_fn() - t0
        self.phases.seconds["train"] += time.perf_counter() - p0
        c.step += 1
        c.flops += self.flops_by_shape[tuple(x.shape)]
        c.samples += x.shape[0]
        c.forward_samples += out.forward_samples
        if not math.isfinite(out.loss):
            raise NonFiniteLoss(f"training loss is {out.loss} at epoch {epoch}, step {c.step}")

    def take_step(self, x: Tensor, y: Tensor, epoch: int, clock_fn: Callable[[], float]) -> bool:
        """One training step with its measurements; True when the budget is reached."""
        reference = None
        sampled = (self.counts.step + 1) % self.schedule.health_every == 0
        if sampled:  # the true gradient before the update, on the same batch and random draws
            with self.phases("health"), forked_rng(self.device):
                reference = attempt(self.unmeasured, COMPARED, partial(self.learner.true_gradient, x, y))
        self.measure_on_twins(x, y)
        self.timed_step(x, y, epoch, clock_fn)
        if sampled:
            with self.phases("health"):
                for metric, layer, value in health_rows(self.learner, reference, self.exact, self.unmeasured):
                    self.record(epoch, "train", metric, value, layer)
                diagnostics = attempt(self.unmeasured, ("diagnostics",), self.learner.diagnostics) or []
                for metric, layer, value in diagnostics:
                    self.record(epoch, "train", metric, value, layer)
        limit = self.budget.reached(self.counts.clock, self.counts.samples, self.counts.flops)
        if limit is not None:
            self.stopped_by = limit
            return True
        return False

    def finish(self, epochs_done: int, started: float) -> RunResult:
        """The last rows (peak memory, stored state) and the run's summary."""
        if self.peak_memory is None:
            raise RuntimeError(
                f"run {self.spec.run_id} took no training step (training split has {len(self.data.train)} samples)"
            )
        stored = state_bytes(self.learner.state_dict())
        self.record(epochs_done, "train", "peak_memory_bytes", self.peak_memory)
        self.record(epochs_done, "train", "state_bytes", stored)
        final = {r["split"]: r["value"] for r in self.rows if r["metric"] == "accuracy" and r["epoch"] == epochs_done}
        counted = "train_flops" not in self.unmeasured.reasons
        test_y = self.data.test.y
        summary = {
            "epochs_completed": epochs_done,
            "steps": self.counts.step,
            "stopped_by": self.stopped_by,
            "train_seconds": self.counts.clock,
            "train_flops": self.counts.flops if counted else None,
            "peak_memory_bytes": self.peak_memory,
            "state_bytes": stored,
            "test_accuracy": final.get("test"),
            "exact_layers": sorted(self.exact),
            "train_eval_samples": len(self.eval_splits[0][1]),
            "n_classes": self.data.info.n_classes,
            # a constant guess of the test split's most frequent class: chance for the scores' normalization
            "chance_accuracy": float(torch.bincount(test_y).max()) / len(test_y),
        }
        seconds = self.phases.seconds
        seconds["other"] = max(0.0, time.perf_counter() - started - sum(seconds.values()))
        return RunResult(self.rows, summary, self.unmeasured.to_json(), seconds)


def _accuracies(rows: list[dict[str, Any]], epoch: int) -> dict[str, float]:
    """Split -> accuracy evaluated at ``epoch``."""
    return {r["split"]: r["value"] for r in rows if r["metric"] == "accuracy" and r["epoch"] == epoch}


def run(
    spec: RunSpec,
    learners: Registry,
    tasks: Registry,
    device: torch.device,
    cache: LoadedTasks | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    clock_fn: Callable[[], float] = time.perf_counter,
    on_evaluated: Callable[[int, dict[str, float]], bool] | None = None,
) -> RunResult:
    """Train and measure one run. ``on_epoch(epoch, epochs)`` reports progress; ``clock_fn``
    is the training clock's time source (seconds); ``on_evaluated(epoch, split -> accuracy)``,
    called after each evaluated epoch before the last, may stop the run (True: a tuning pruner's
    verdict; the run ends with ``stopped_by = "pruned"`` at that epoch).

    The steps: set up (``Training.start``), evaluate the initial network, then per epoch a
    minibatch order and ``Training.take_step`` per minibatch until the budget is reached, an
    evaluation every ``eval_every`` epochs and after the last, and ``Training.finish``.
    """
    started = time.perf_counter()
    t = Training.start(spec, learners, tasks, device, cache)
    order = torch.Generator(device="cpu").manual_seed(spec.seed + 1)  # minibatch order
    t.evaluate_all(0)
    epochs_done, epochs = 0, t.budget.epochs
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(t.data.train), generator=order).to(device)
        for x, y in minibatches(t.train_x, t.train_y, perm, t.learner.batch_size):
            if t.take_step(x, y, epoch, clock_fn):
                break
        epochs_done = epoch
        last = epoch == epochs or t.stopped_by != "epochs"
        if last or epoch % t.schedule.eval_every == 0:
            t.evaluate_all(epoch)
            if not last and on_evaluated is not None and on_evaluated(epoch, _accuracies(t.rows, epoch)):
                t.stopped_by = "pruned"
        if on_epoch is not None:
            on_epoch(epoch, epochs)
        if t.stopped_by != "epochs":
            break
    return t.finish(epochs_done, started)
