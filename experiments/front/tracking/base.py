"""The tracker interface, the ``--track`` targets and the one-warning-per-run guard.

A target is ``NAME`` or ``NAME:VALUE``: ``mlflow[:TRACKING_URI]``, ``tensorboard[:LOG_DIR]``,
``wandb[:PROJECT]``. ``parse_targets`` checks the names and that each backend's extra is
installed (a ``ConfigError`` naming the extra, before any run); ``open_trackers`` builds them.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bpbench.experiments.plan.config import ConfigError

# backend name -> (the module its extra provides, the extra)
BACKENDS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


class TrackingWarning(UserWarning):
    """A run (or a study's artifacts) not mirrored to a tracker; the results folder has it."""


@dataclass(frozen=True)
class TrackedRun:
    """One stored run as a tracker sees it."""

    run_id: str
    name: str  # "label on task, seed k"
    params: dict[str, str]  # label, learner, task, seed, configuration (learner options, model, budget)
    tags: dict[str, str]  # study, run_id, commit, status, phase (tuned studies)
    final: dict[str, float]  # the run's final measures by their public names
    curves: list[tuple[str, int, float]] = field(default_factory=list)  # (metric, epoch, value) per evaluation


class Tracker(Protocol):
    """A backend: ``start_study`` once, ``log_run`` per stored run, ``finish_study`` with the
    study's tables and figures (files). Any exception is the caller's to turn into a warning."""

    name: str

    def start_study(self, study: str, tags: Mapping[str, str]) -> None: ...

    def log_run(self, run: TrackedRun) -> None: ...

    def finish_study(self, artifacts: Sequence[Path]) -> None: ...


def final_only(run: TrackedRun) -> dict[str, float]:
    """The final measures that are not also a curve (a curve's last point is its final value)."""
    curved = {name for name, _, _ in run.curves}
    return {k: v for k, v in run.final.items() if k not in curved}


@dataclass(frozen=True)
class Target:
    backend: str
    value: str | None  # the URI, log folder or project; None: the backend's default


def parse_targets(items: Sequence[str] | str | None, table: Any = None) -> list[Target]:
    """The targets of ``--track`` items and a study's ``[tracking]`` table (``mlflow = "URI"``,
    ``tensorboard = "DIR"``, ``wandb = true``); a ConfigError for an unknown backend, a bad value
    or a backend whose extra is not installed."""
    texts = [items] if isinstance(items, str) else list(items or [])
    if table is not None:
        if not isinstance(table, dict):
            raise ConfigError(f"tracking = {table!r}: expected a table, e.g. [tracking] mlflow = 'sqlite:///m.db'")
        for key, value in table.items():
            if value is False:
                continue
            if not (value is True or (isinstance(value, str) and value)):
                raise ConfigError(f"tracking.{key} = {value!r}: expected true or a non-empty string")
            texts.append(key if value is True else f"{key}:{value}")
    targets = []
    for text in texts:
        backend, _, value = str(text).partition(":")
        if backend not in BACKENDS:
            raise ConfigError(f"track = {text!r}: allowed: mlflow[:URI], tensorboard[:DIR], wandb[:PROJECT]")
        module, extra = BACKENDS[backend]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f'track = {text!r} needs {module}, which is not installed: pip install "bpbench[{extra}]"'
            )
        targets.append(Target(backend, value or None))
    return targets


def open_trackers(targets: Sequence[Target], root: Path) -> list[Tracker]:
    """A tracker per target (``root``: the results folder, where default log folders go)."""
    trackers: list[Tracker] = []
    for target in targets:
        if target.backend == "mlflow":
            from bpbench.experiments.front.tracking.mlflow_tracker import MlflowTracker

            trackers.append(MlflowTracker(target.value))
        elif target.backend == "tensorboard":
            from bpbench.experiments.front.tracking.tensorboard_tracker import TensorboardTracker

            trackers.append(TensorboardTracker(Path(target.value) if target.value else root / "tensorboard"))
        else:
            from bpbench.experiments.front.tracking.wandb_tracker import WandbTracker

            trackers.append(WandbTracker(target.value, root))
    return trackers


class Guarded:
    """Calls a tracker, turning a failure into one ``TrackingWarning`` (per run, per tracker);
    a tracker whose study could not start warns for each run without trying it again."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker, self.broken = tracker, ""

    def call(self, what: str, action: Callable[[], None]) -> None:
        if self.broken:
            warnings.warn(f"{what} not mirrored to {self.tracker.name}: {self.broken}", TrackingWarning, stacklevel=2)
            return
        try:
            action()
        except Exception as exc:  # a mirror's failure never costs a run: one warning, the folder has it
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            warnings.warn(f"{what} not mirrored to {self.tracker.name}: {reason}", TrackingWarning, stacklevel=2)
            if what == "study":
                self.broken = f"it could not start ({reason})"
