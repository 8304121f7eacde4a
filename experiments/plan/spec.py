"""A run: one learner on one task with one seed, fully described by a JSON-able ``RunSpec``.

The run id is a hash of the canonical spec, so the same run has the same id in every
study, on every machine, and a re-run study can skip what is done. The run's seed is
derived from the study seed, the task (with its options) and the seed index: every
learner on a task with seed index k sees the same data order and, where the model
matches, the same initial weights (paired comparisons).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How much training a run gets; whichever set limit is reached first ends the run.

    epochs: passes over the training split (> 0). samples: training samples drawn.
    flops: training FLOPs (as the runner counts them). max_seconds: training wall
    seconds (evaluation not counted). The step that reaches a limit is the last one, so
    a run ends at most one step past it; the run's summary says which limit stopped it
    (``stopped_by``). Equal compute = the same ``samples``/``flops``/``max_seconds``
    for every learner, with ``epochs`` as a cap that should not bind (tables flag it).
    """

    epochs: int = 5
    max_seconds: float | None = None
    samples: int | None = None
    flops: float | None = None

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs = {self.epochs}: must be a positive integer")
        for key in ("max_seconds", "samples", "flops"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):  # nan would mean "no limit"
                raise ValueError(f"{key} = {value}: must be a finite number > 0 (or left out for no limit)")

    def reached(self, seconds: float, samples: int, flops: int) -> str | None:
        """The first limit that ``seconds``/``samples``/``flops`` of training reach, else None."""
        for name, limit, used in (
            ("max_seconds", self.max_seconds, seconds),
            ("samples", self.samples, samples),
            ("flops", self.flops, flops),
        ):
            if limit is not None and used >= limit:
                return name
        return None


TIMEOUT_FACTOR = 10.0  # default wall-clock limit of a run: this many times budget.max_seconds ...
TIMEOUT_SLACK_S = 300.0  # ... plus this (data loading, evaluation, FLOP counting are off the training clock)
DEFAULT_TIMEOUT_S = 24 * 3600.0  # a run without max_seconds: the study-level default


def run_timeout(timeout: float | None, max_seconds: float | None) -> float:
    """A run's wall-clock limit: ``schedule.timeout`` when set, else ``TIMEOUT_FACTOR`` x
    ``budget.max_seconds`` + ``TIMEOUT_SLACK_S`` where that is set, else ``DEFAULT_TIMEOUT_S``."""
    if timeout is not None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"schedule.timeout = {timeout}: must be a finite number of seconds > 0")
        return float(timeout)
    if max_seconds is not None:
        return TIMEOUT_FACTOR * max_seconds + TIMEOUT_SLACK_S
    return DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Schedule:
    """When the runner measures. eval_every: epochs between evaluations (the last epoch is
    always evaluated). health_every: training steps between gradient-health samples."""

    eval_every: int = 1
    health_every: int = 20

    def __post_init__(self) -> None:
        if self.eval_every <= 0:
            raise ValueError(f"eval_every = {self.eval_every}: must be a positive integer")
        if self.health_every <= 0:
            raise ValueError(f"health_every = {self.health_every}: must be a positive integer")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result (all values plain JSON types)."""

    learner: str  # registered learner name
    label: str  # the study's name for this learner configuration
    params: dict[str, Any]  # the learner's full Params, defaults filled in
    task: str  # registered task name
    task_label: str
    task_params: dict[str, Any]
    model: dict[str, Any]
    budget: dict[str, Any]
    schedule: dict[str, Any]
    seed_index: int
    study_seed: int
    varied: tuple[str, ...] = field(default=(), compare=False)  # grid keys, for tables (not hashed)
    study: str = field(default="", compare=False)  # the study that planned it, for compacted results (not hashed)
    # a tuned study's run: {"phase": "tuning" | "final", "trial": N, "sampler": ...} (hashed when set)
    tuning: dict[str, Any] | None = None
    timeout: float = field(
        default=DEFAULT_TIMEOUT_S, compare=False
    )  # wall-clock seconds before it is killed (not hashed)

    def canonical(self) -> dict[str, Any]:
        out = {
            "learner": self.learner,
            "label": self.label,
            "params": self.params,
            "task": self.task,
            "task_label": self.task_label,
            "task_params": self.task_params,
            "model": self.model,
            "budget": self.budget,
            "schedule": self.schedule,
            "seed_index": self.seed_index,
            "study_seed": self.study_seed,
        }
        if self.tuning is not None:  # plain runs keep the ids they always had
            out["tuning"] = self.tuning
        return out

    @property
    def run_id(self) -> str:
        return digest(self.canonical())[:16]

    @property
    def seed(self) -> int:
        """63-bit seed from (study seed, task, task options, seed index)."""
        key = {
            "study_seed": self.study_seed,
            "task": self.task,
            "task_params": self.task_params,
            "seed_index": self.seed_index,
        }
        return int(digest(key)[:15], 16)

    def describe(self) -> str:
        if self.tuning is not None and self.tuning.get("phase") == "tuning":
            return f"{self.label} on {self.task_label}, tuning trial {self.tuning['trial']}"
        return f"{self.label} on {self.task_label}, seed {self.seed_index}" + (" (final)" if self.tuning else "")

    def to_json(self) -> dict[str, Any]:
        return {**self.canonical(), "varied": list(self.varied), "study": self.study, "timeout": self.timeout}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        return cls(
            **{
                **data,
                "varied": tuple(data.get("varied", ())),
                "study": data.get("study", ""),
                "timeout": data.get("timeout", DEFAULT_TIMEOUT_S),
            }
        )
