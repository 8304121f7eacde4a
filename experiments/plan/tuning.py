"""Tuned studies: the ``[tuning]`` block and ``[learners.X.search]`` spaces, validated before any run.

    [tuning]
    trials = 16              # per learner label x task, the same for every learner
    sampler = "qmc"          # qmc (scrambled Sobol) | random | tpe | grid
    seed = 0                 # the samplers' seed
    select = "val_accuracy"  # at the final epoch; or "best_val_accuracy" (best evaluated epoch)
    final_seeds = 5          # fresh seeds for the chosen configuration
    [learners.fa.search]
    lr = { low = 1e-4, high = 3e-2, log = true }   # a range: float or int by the option's type
    momentum = [0.0, 0.9]                          # a list is a categorical choice
    [learners.fa.search.model]
    hidden = [[64], [256]]                         # the learner's model options too

``tuning_plan(raw, learners)`` checks all of it (one ConfigError line per problem) and returns a
``TuningPlan``: per learner label its ``Space`` (option -> ``Range`` | ``Choice``).
``configure(base, values, ...)`` is a run of ``base`` with the drawn values. Tuning runs take seed
indices ``TUNING_SEED_BASE + trial`` (trial k of every learner sees the same data order); final
runs take 0..final_seeds-1, so the two never overlap and the finals pair with the reference's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, get_args

from bpbench.experiments.plan.config import (
    ConfigError,
    build,
    coerce,
    fields_of,
    to_plain,
)
from bpbench.experiments.plan.registry import Registry, UnknownNameError
from bpbench.experiments.plan.spec import RunSpec

SAMPLERS = ("qmc", "random", "tpe", "grid")
SELECT = ("val_accuracy", "best_val_accuracy")
TUNING_KEYS = ("trials", "sampler", "seed", "select", "final_seeds")
RANGE_KEYS = ("low", "high", "log", "step")
TUNING_SEED_BASE = 10_000  # tuning seed indices start here; final seeds must stay below it
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Range:
    """A numeric range for one option: float or int (the option's type), log-uniform when ``log``."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False

    def __str__(self) -> str:
        kind = "int" if self.integer else "log" if self.log else "linear"
        return f"{kind} {self.low:g}..{self.high:g}" + (f" step {self.step:g}" if self.step else "")

    def points(self) -> int | None:
        """How many values a grid takes from this range (None: uncountable, a float range without step)."""
        if self.integer:
            return int((self.high - self.low) // (self.step or 1) + 1)
        return None if self.step is None else round((self.high - self.low) / self.step) + 1

    def grid_values(self) -> list[float]:
        n = self.points()
        if n is None:
            raise ValueError("a float range without step has no grid points")
        step = self.step or 1
        values = [self.low + i * step for i in range(n)]
        return [int(v) for v in values] if self.integer else values


@dataclass(frozen=True)
class Choice:
    """A categorical choice among ``values`` (plain TOML values, checked against the option's type)."""

    values: tuple[Any, ...]

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


Dimension = Range | Choice
Space = dict[str, Dimension]  # "lr" or "model.hidden" -> its dimension


@dataclass(frozen=True)
class TuningPlan:
    trials: int
    sampler: str
    seed: int
    select: str
    final_seeds: int
    spaces: dict[str, Space]  # learner label -> its space (empty: no search space, one configuration)


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where} = {value!r}: expected an integer from {low} to {high}")
    return value


def _range(value: dict[str, Any], tp: Any, where: str) -> Range:
    unknown = sorted(set(value) - set(RANGE_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; allowed: {', '.join(RANGE_KEYS)}")
    if tp not in (int, float):
        raise ConfigError(f"{where} = {value!r}: a range needs a numeric option; give a list of choices instead")
    for key in ("low", "high"):
        if key not in value:
            raise ConfigError(f"{where} = {value!r}: a range needs 'low' and 'high'")
        coerce(value[key], tp, f"{where}.{key}")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log = {log!r}: expected true or false")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{where}: empty or inverted range low = {low!r}, high = {high!r}; expected low < high")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got low = {low!r})")
    if step is not None:
        if (
            isinstance(step, bool)
            or not isinstance(step, (int, float))
            or step <= 0
            or (tp is int and not isinstance(step, int))
        ):
            raise ConfigError(f"{where}.step = {step!r}: expected a positive {tp.__name__}")
        if log:
            raise ConfigError(f"{where}: step and log = true cannot be combined; allowed: one of them")
    return Range(float(low) if tp is float else low, float(high) if tp is float else high, log, step, tp is int)


def _dimension(value: Any, tp: Any, where: str) -> Dimension:
    if isinstance(value, dict):
        numeric = [a for a in get_args(tp) if a in (int, float)] if type(None) in get_args(tp) else []
        return _range(value, numeric[0] if len(numeric) == 1 else tp, where)  # float | None: a float range
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where} = []: an empty choice; give at least one value")
        for i, v in enumerate(value):
            coerce(v, tp, f"{where}[{i}]")
        return Choice(tuple(value))
    raise ConfigError(
        f"{where} = {value!r}: expected a range {{ low = .., high = .., log = true }} or a list of choices"
    )


def parse_space(label: str, table: Any, params_cls: type, model_cls: type) -> Space:
    """A learner's ``search`` table -> its Space; every option must be one the learner (or its model) has."""
    where = f"learners.{label}.search"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} = {table!r}: expected a table of option = range or list")
    space: Space = {}
    params, model = fields_of(params_cls), fields_of(model_cls)
    for key, value in table.items():
        if key == "model" and isinstance(value, dict):
            for name, sub in value.items():
                if name not in model:
                    raise ConfigError(
                        f"{where}.model.{name}: the model has no option {name!r}; allowed: {', '.join(sorted(model))}"
                    )
                space[f"model.{name}"] = _dimension(sub, model[name], f"{where}.model.{name}")
        elif key not in params:
            raise ConfigError(
                f"{where}.{key}: learner {label!r} has no option {key!r}; "
                f"allowed: {', '.join(sorted(params))} (and model.*)"
            )
        else:
            space[key] = _dimension(value, params[key], f"{where}.{key}")
    return space


def grid_points(space: Space, where: str) -> int:
    """How many configurations a grid over ``space`` has (a ConfigError for an uncountable range)."""
    total = 1
    for name, dim in space.items():
        n = len(dim.values) if isinstance(dim, Choice) else dim.points()
        if n is None:
            raise ConfigError(
                f"{where}.{name}: a grid sampler needs a list or a range with step; "
                "allowed: sampler = qmc | random | tpe for a continuous range"
            )
        total *= n
    return total


def tuning_plan(raw: dict[str, Any], learners: Registry) -> TuningPlan | None:
    """The study's TuningPlan (None without a ``[tuning]`` table); a ConfigError on any bad value."""
    from bpbench.learners.models import (
        ModelSpec,  # torch: only when a study is expanded
    )

    tables = raw.get("learners", {}) if isinstance(raw.get("learners"), dict) else {}
    searched = [label for label, t in tables.items() if isinstance(t, dict) and "search" in t]
    if "tuning" not in raw:
        if searched:
            raise ConfigError(
                f"learners.{searched[0]}.search: a search space needs a [tuning] table "
                "(trials, sampler, seed, select, final_seeds)"
            )
        return None
    block = raw["tuning"]
    if not isinstance(block, dict):
        raise ConfigError(f"tuning = {block!r}: expected a table, e.g. [tuning] trials = 16")
    unknown = sorted(set(block) - set(TUNING_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in tuning; allowed: {', '.join(TUNING_KEYS)}")
    if "seeds" in raw:
        raise ConfigError(
            f"seeds = {raw['seeds']!r}: a tuned study sets its seeds with tuning.final_seeds; remove seeds"
        )
    trials = _int(block.get("trials", 16), "tuning.trials", 1, MAX_TRIALS)
    sampler = block.get("sampler", "qmc")
    if sampler not in SAMPLERS:
        raise ConfigError(f"tuning.sampler = {sampler!r}: allowed: {', '.join(SAMPLERS)}")
    seed = _int(block.get("seed", 0), "tuning.seed", 0, 2**31 - 1)
    select = block.get("select", "val_accuracy")
    if select not in SELECT:
        raise ConfigError(f"tuning.select = {select!r}: allowed: {', '.join(SELECT)}")
    final_seeds = _int(block.get("final_seeds", 5), "tuning.final_seeds", 1, TUNING_SEED_BASE)
    spaces: dict[str, Space] = {}
    for label, table in tables.items():
        if not isinstance(table, dict):
            continue  # expand() names the bad learner table
        try:
            cls = learners.get(table.get("learner", label))
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from exc
        spaces[label] = parse_space(label, table.get("search", {}), cls.Params, ModelSpec)
        if sampler == "grid" and spaces[label]:
            points = grid_points(spaces[label], f"learners.{label}.search")
            if points > trials:
                raise ConfigError(
                    f"learners.{label}.search: a grid of {points} points is more than "
                    f"tuning.trials = {trials}; allowed: at most {trials} points"
                )
    return TuningPlan(trials, sampler, seed, select, final_seeds, spaces)


def rounded(value: Any) -> Any:
    """A drawn float to 3 significant digits (readable labels; the run uses exactly this value)."""
    return float(f"{value:.3g}") if isinstance(value, float) else value


def configure(
    base: RunSpec, values: dict[str, Any], learners: Registry, seed_index: int, tuning: dict[str, Any]
) -> RunSpec:
    """``base`` with the drawn ``values`` ("lr", "model.hidden", ...), rebuilt and checked like a study's runs.

    Raises ConfigError when the combination is refused (by the learner's Params or check_model).
    """
    from bpbench.learners.models import ModelSpec

    cls = learners.get(base.learner)
    params = {**base.params, **{k: v for k, v in values.items() if not k.startswith("model.")}}
    model = {**base.model, **{k[6:]: v for k, v in values.items() if k.startswith("model.")}}
    where = f"learners.{base.label}"
    built_model = build(ModelSpec, model, f"{where}.model")
    built = build(cls.Params, params, where)
    try:
        cls.check_model(built_model, built)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return dataclasses.replace(
        base, params=to_plain(built), model=to_plain(built_model), seed_index=seed_index, tuning=tuning
    )


__all__ = [
    "SAMPLERS",
    "SELECT",
    "TUNING_SEED_BASE",
    "Choice",
    "Range",
    "Space",
    "TuningPlan",
    "configure",
    "grid_points",
    "parse_space",
    "rounded",
    "tuning_plan",
]
