"""Tuned studies: the ``[tuning]`` block and ``[learners.X.search]`` spaces, validated before any run.

    [tuning]
    trials = 8               # per searched dimension (trials_scale = "fixed": per learner label x task)
    # flops = 1e12           # or: a budget of training FLOPs per learner x task and repeat
    sampler = "qmc"          # qmc (scrambled Sobol) | random | tpe | grid
    seed = 0                 # the samplers' seed (repeat r: seed + r)
    select = "val_accuracy"  # at the final epoch; or "best_val_accuracy" (best evaluated epoch)
    final_seeds = 5          # fresh seeds for each repeat's chosen configuration
    seeds_per_trial = 3      # tuning seeds per trial: selection on their mean validation score
    repeats = 3              # independent tuning studies (own sampler seed and tuning seeds)
    pruner = "median"        # none | median | successive_halving | hyperband
    compare_default = true   # also the hand-picked configuration on the final seeds
    [learners.fa.search]
    lr = { low = 1e-4, high = 3e-2, log = true }   # a range: float or int by the option's type
    momentum = [0.0, 0.9]                          # a list is a categorical choice
    [learners.fa.search.model]
    hidden = [[64], [256]]                         # the learner's model options too

``tuning_plan(raw, learners)`` checks all of it (one ConfigError line per problem) and returns a
``TuningPlan``: per learner label its ``Space`` (option -> ``Range`` | ``Choice``).
``configure(base, values, ...)`` is a run of ``base`` with the drawn values. Seeds: every trial of
repeat r trains on the tuning seed indices ``tuning_seeds(r)`` (``TUNING_SEED_BASE + SEED_STRIDE * r
+ j``, j < seeds_per_trial: configurations of one repeat are compared on the same data orders); the
final runs of repeat r take ``final_seed_indices(r)`` (r * final_seeds ..), all below
``TUNING_SEED_BASE``, so tuning and final seeds never overlap and the finals pair with the
reference's. Trials: ``trials_for(space)`` (the documented rule: ``trials`` per searched dimension
unless ``trials_scale = "fixed"``). ``edge(dim, value)``: whether a chosen value lies within
``EDGE_FRACTION`` of its range's ends (log scale for log ranges). ``degenerate(dim)``: why a range
cannot be tuned (None when it can), shown as a warning before any run.
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
PRUNERS = ("none", "median", "successive_halving", "hyperband")
TRIALS_SCALE = ("per_dimension", "fixed")
TUNING_KEYS = (
    "trials",
    "trials_scale",
    "flops",
    "sampler",
    "seed",
    "select",
    "final_seeds",
    "seeds_per_trial",
    "repeats",
    "pruner",
    "compare_default",
)
RANGE_KEYS = ("low", "high", "log", "step")
TUNING_SEED_BASE = 10_000  # tuning seed indices start here; final seeds must stay below it
SEED_STRIDE = 100  # repeat r's tuning seeds: TUNING_SEED_BASE + SEED_STRIDE * r + j
MAX_TRIALS = 10_000
MAX_REPEATS = 100
DEFAULT_TRIALS = 8  # per searched dimension
FLOPS_MAX_TRIALS = 1_000  # the trial cap of a FLOPs budget
EDGE_FRACTION = 0.05  # a chosen value this close to a range end (of its width, log scale for log) is flagged
DISTINCT_MIN = 3  # a range with fewer distinct values (3 significant digits) is degenerate


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
    trials: int  # per searched dimension, or per learner x task when trials_scale = "fixed"
    sampler: str
    seed: int
    select: str
    final_seeds: int
    spaces: dict[str, Space]  # learner label -> its space (empty: no search space, one configuration)
    trials_scale: str = "per_dimension"
    flops: float | None = None  # a training-FLOPs budget per learner x task and repeat (trials: its cap)
    seeds_per_trial: int = 1
    repeats: int = 1
    pruner: str = "none"
    compare_default: bool = False
    warnings: tuple[str, ...] = ()  # degenerate ranges, said before any run

    def trials_for(self, space: Space) -> int:
        """Trials per learner x task and repeat: ``trials`` x searched dimensions (``fixed``: ``trials``;
        a FLOPs budget: at most ``FLOPS_MAX_TRIALS``, drawn while the budget lasts)."""
        if self.flops is not None:
            return FLOPS_MAX_TRIALS
        return self.trials if self.trials_scale == "fixed" else self.trials * max(1, len(space))

    def tuning_seeds(self, repeat: int) -> list[int]:
        """The seed indices every trial of ``repeat`` trains on."""
        return [TUNING_SEED_BASE + SEED_STRIDE * repeat + j for j in range(self.seeds_per_trial)]

    def final_seed_indices(self, repeat: int) -> list[int]:
        """The fresh seed indices of ``repeat``'s final runs (the pooled finals: 0..repeats*final_seeds-1)."""
        return list(range(repeat * self.final_seeds, (repeat + 1) * self.final_seeds))


def edge(dim: Dimension, value: Any) -> str | None:
    """ "low" or "high" when ``value`` lies within ``EDGE_FRACTION`` of that end of a range (log scale
    for a log range), else None (choices have no edge)."""
    if not isinstance(dim, Range) or not isinstance(value, (int, float)):
        return None
    scale = math.log if dim.log else float
    low, high, v = scale(dim.low), scale(dim.high), scale(max(value, dim.low) if dim.log else value)
    position = (v - low) / (high - low)
    return "low" if position <= EDGE_FRACTION else "high" if position >= 1 - EDGE_FRACTION else None


def degenerate(dim: Dimension) -> str | None:
    """Why a dimension cannot be tuned (fewer than ``DISTINCT_MIN`` distinct values), or None."""
    if isinstance(dim, Choice):
        n = len(set(map(repr, dim.values)))
        return None if n >= 2 else f"is one value ({dim}); nothing to tune there"
    if dim.points() is not None:
        n = dim.points() or 0
    else:
        grid = [dim.low + (dim.high - dim.low) * i / 64 for i in range(65)]
        if dim.log:
            grid = [math.exp(math.log(dim.low) + (math.log(dim.high) - math.log(dim.low)) * i / 64) for i in range(65)]
        n = len({rounded(float(v)) for v in grid})
    return None if n >= DISTINCT_MIN else f"holds only {n} distinct value(s) ({dim}); nothing to tune there"


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
                "(trials, sampler, seed, select, final_seeds, ...)"
            )
        return None
    block = raw["tuning"]
    if not isinstance(block, dict):
        raise ConfigError(f"tuning = {block!r}: expected a table, e.g. [tuning] trials = 8")
    unknown = sorted(set(block) - set(TUNING_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in tuning; allowed: {', '.join(TUNING_KEYS)}")
    if "seeds" in raw:
        raise ConfigError(
            f"seeds = {raw['seeds']!r}: a tuned study sets its seeds with tuning.final_seeds; remove seeds"
        )
    plan = _plan_values(block)
    spaces: dict[str, Space] = {}
    notes: list[str] = []
    for label, table in tables.items():
        if not isinstance(table, dict):
            continue  # expand() names the bad learner table
        try:
            cls = learners.get(table.get("learner", label))
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from exc
        spaces[label] = space = parse_space(label, table.get("search", {}), cls.Params, ModelSpec)
        notes += [f"learners.{label}.search.{k} {why}" for k, d in space.items() if (why := degenerate(d))]
        if plan.sampler == "grid" and space:
            points, trials = grid_points(space, f"learners.{label}.search"), plan.trials_for(space)
            if points > trials:
                raise ConfigError(
                    f"learners.{label}.search: a grid of {points} points is more than the "
                    f"{trials} trial(s) of tuning.trials = {plan.trials} ({plan.trials_scale}); "
                    f"allowed: at most {trials} points"
                )
    return dataclasses.replace(plan, spaces=spaces, warnings=tuple(notes))


def _choice(block: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = block.get(key, default)
    if value not in allowed:
        raise ConfigError(f"tuning.{key} = {value!r}: allowed: {', '.join(allowed)}")
    return str(value)


def _plan_values(block: dict[str, Any]) -> TuningPlan:
    """The ``[tuning]`` values (spaces empty), each checked: a ConfigError names the first bad one."""
    if "trials" in block and "flops" in block:
        raise ConfigError("tuning: both trials and flops given; allowed: one budget, trials or flops")
    flops = block.get("flops")
    if flops is not None and (
        isinstance(flops, bool) or not isinstance(flops, (int, float)) or not math.isfinite(flops) or flops <= 0
    ):
        raise ConfigError(f"tuning.flops = {flops!r}: expected training FLOPs per learner x task (a number > 0)")
    compare = block.get("compare_default", False)
    if not isinstance(compare, bool):
        raise ConfigError(f"tuning.compare_default = {compare!r}: expected true or false")
    repeats = _int(block.get("repeats", 1), "tuning.repeats", 1, MAX_REPEATS)
    final_seeds = _int(block.get("final_seeds", 5), "tuning.final_seeds", 1, TUNING_SEED_BASE)
    if repeats * final_seeds > TUNING_SEED_BASE:
        raise ConfigError(
            f"tuning.repeats x final_seeds = {repeats * final_seeds}: allowed: at most {TUNING_SEED_BASE} final seeds"
        )
    return TuningPlan(
        trials=_int(block.get("trials", DEFAULT_TRIALS), "tuning.trials", 1, MAX_TRIALS),
        sampler=_choice(block, "sampler", SAMPLERS, "qmc"),
        seed=_int(block.get("seed", 0), "tuning.seed", 0, 2**31 - 1 - MAX_REPEATS),
        select=_choice(block, "select", SELECT, "val_accuracy"),
        final_seeds=final_seeds,
        spaces={},
        trials_scale=_choice(block, "trials_scale", TRIALS_SCALE, "per_dimension"),
        flops=None if flops is None else float(flops),
        seeds_per_trial=_int(block.get("seeds_per_trial", 1), "tuning.seeds_per_trial", 1, SEED_STRIDE),
        repeats=repeats,
        pruner=_choice(block, "pruner", PRUNERS, "none"),
        compare_default=compare,
    )


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
    "EDGE_FRACTION",
    "PRUNERS",
    "SAMPLERS",
    "SELECT",
    "TUNING_SEED_BASE",
    "Choice",
    "Range",
    "Space",
    "TuningPlan",
    "configure",
    "degenerate",
    "edge",
    "grid_points",
    "parse_space",
    "rounded",
    "tuning_plan",
]
