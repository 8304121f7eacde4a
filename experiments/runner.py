"""The training loop: the runner owns the loop, budget, evaluation schedule, clock and seeds.

``run(spec, ...)`` trains one learner on one task and returns tidy rows
``(run_id, epoch, step, split, metric, layer, value)`` plus a summary. It raises on any
failure (including a non-finite loss); the executor records the error and moves on.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bpbench.experiments.config import build
from bpbench.experiments.energy import cost_rows
from bpbench.experiments.measure import count_flops, gradient_alignment, gradient_health, peak_step_memory, warm_up
from bpbench.experiments.registry import Registry
from bpbench.experiments.spec import Budget, RunSpec, Schedule, canonical_json
from bpbench.learners.base import Learner, StepOutput
from bpbench.learners.models import ModelSpec
from bpbench.tasks.base import Split, TaskData
from bpbench.tasks.cache import load_cached

EVAL_CHUNK = 2048
DIAGNOSTIC_BATCH = 256  # test samples passed to Learner.evaluation_metrics


class NonFiniteLoss(FloatingPointError):
    """Training diverged: the step's loss is NaN or infinite."""


@dataclass
class TaskCache:
    """Loaded tasks of one worker process, keyed by (task name, task options)."""

    data: dict[str, TaskData] = field(default_factory=dict)

    def get(self, spec: RunSpec, tasks: Registry) -> TaskData:
        key = canonical_json([spec.task, spec.task_params])
        if key not in self.data:
            task_cls = tasks.get(spec.task)
            params = build(task_cls.Params, spec.task_params, f"tasks.{spec.task_label}")
            self.data[key] = load_cached(task_cls(), params)
        return self.data[key]


@dataclass
class RunResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def evaluate(learner: Learner, split: Split, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the learner's predictions on a whole split."""
    correct, loss_sum = 0, 0.0
    for start in range(0, len(split), EVAL_CHUNK):
        x = split.x[start:start + EVAL_CHUNK].to(device)
        y = split.y[start:start + EVAL_CHUNK].to(device)
        logits = learner.predict(x)
        if logits.shape != (x.shape[0], learner.task.n_classes):
            raise ValueError(f"predict returned shape {tuple(logits.shape)}, expected ({x.shape[0]}, {learner.task.n_classes})")
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    return correct / len(split), loss_sum / len(split)


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


def run(
    spec: RunSpec,
    learners: Registry,
    tasks: Registry,
    device: torch.device,
    cache: TaskCache | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train and measure one run. ``on_epoch(epoch, epochs)`` reports progress."""
    budget = build(Budget, spec.budget, "budget")
    schedule = build(Schedule, spec.schedule, "schedule")
    data = (cache or TaskCache()).get(spec, tasks)
    learner = build_learner(spec, data, learners, device)
    order = torch.Generator(device="cpu").manual_seed(spec.seed + 1)  # minibatch order
    train_x, train_y = data.train.x.to(device), data.train.y.to(device)
    n, batch = len(data.train), learner.batch_size
    rows: list[dict[str, Any]] = []

    def record(epoch: int, step: int, split: str, metric: str, value: float, layer: str = "") -> None:
        rows.append({"run_id": spec.run_id, "epoch": epoch, "step": step, "split": split,
                     "metric": metric, "layer": layer, "value": float(value)})

    clock, flops, samples, forward_samples, step = 0.0, 0, 0, 0, 0
    flops_by_shape: dict[tuple[int, ...], int] = {}
    peak_memory: int | None = None
    stopped_by = "epochs"

    def evaluate_all(epoch: int) -> None:
        for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
            acc, loss = evaluate(learner, split, device)
            record(epoch, step, name, "accuracy", acc)
            record(epoch, step, name, "loss", loss)
        for metric, value in (("train_seconds", clock), ("train_flops", flops), ("train_samples", samples),
                              ("forward_samples", forward_samples)):
            record(epoch, step, "train", metric, value)
        for metric, layer, value in [*learner.evaluation_metrics(probe), *cost_rows(learner, probe)]:
            record(epoch, step, "test", metric, value, layer)

    probe = data.test.x[:DIAGNOSTIC_BATCH].to(device)
    warm_up(device)
    evaluate_all(0)
    epochs_done = 0
    for epoch in range(1, budget.epochs + 1):
        perm = torch.randperm(n, generator=order).to(device)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            x, y = train_x[idx], train_y[idx]
            shape = tuple(x.shape)
            sampled = (step + 1) % schedule.health_every == 0
            reference = learner.true_gradient(x, y) if sampled else None  # before the update, off the clock
            _sync(device)
            t0 = time.perf_counter()
            if shape not in flops_by_shape:
                # Count the FLOPs of a real step (once per batch shape; a step's FLOPs depend
                # only on shapes), and on the first step its peak memory.
                def instrumented() -> StepOutput:
                    return count_flops(lambda: learner.train_step(x, y))  # type: ignore[return-value]
                if peak_memory is None:
                    (out, counted), peak_memory = peak_step_memory(instrumented, device)
                else:
                    out, counted = instrumented()
                flops_by_shape[shape] = counted
            else:
                out = learner.train_step(x, y)
            _sync(device)
            clock += time.perf_counter() - t0
            step += 1
            flops += flops_by_shape[shape]
            samples += x.shape[0]
            forward_samples += out.forward_samples
            if not math.isfinite(out.loss):
                raise NonFiniteLoss(f"training loss is {out.loss} at epoch {epoch}, step {step}")
            if reference is not None:
                signal = learner.update_signal()
                norms, ratio = gradient_health(signal)
                for layer, value in norms.items():
                    record(epoch, step, "train", "grad_norm", value, layer)
                record(epoch, step, "train", "grad_norm_ratio", ratio)
                for layer, value in gradient_alignment(signal, reference).items():
                    record(epoch, step, "train", "grad_alignment", value, layer)
                for metric, layer, value in learner.diagnostics():
                    record(epoch, step, "train", metric, value, layer)
            limit = budget.reached(clock, samples, flops)
            if limit is not None:
                stopped_by = limit
                break
        epochs_done = epoch
        last = epoch == budget.epochs or stopped_by != "epochs"
        if last or epoch % schedule.eval_every == 0:
            evaluate_all(epoch)
        if on_epoch is not None:
            on_epoch(epoch, budget.epochs)
        if stopped_by != "epochs":
            break
    if peak_memory is None:
        raise RuntimeError(f"run {spec.run_id} took no training step (training split has {n} samples)")
    record(epochs_done, step, "train", "peak_memory_bytes", peak_memory)
    final = {r["split"]: r["value"] for r in rows if r["metric"] == "accuracy" and r["epoch"] == epochs_done}
    summary = {"epochs_completed": epochs_done, "steps": step, "stopped_by": stopped_by, "train_seconds": clock,
               "train_flops": flops, "peak_memory_bytes": peak_memory, "test_accuracy": final.get("test")}
    return RunResult(rows, summary)
