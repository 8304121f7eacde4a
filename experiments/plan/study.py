"""Study files: learners x tasks x params (lists expand to grids) x seeds, in TOML.

A study is validated completely and expanded into ``RunSpec`` objects before any run
starts. Layout (every table optional except ``tasks`` and ``learners``)::

    description = "what claim this study tests"
    seeds = 3                      # a count, or a list of seed indices
    study_seed = 0
    reference = "backprop"         # the learner label every p-value compares against (default)
    seeds_resample_split = false   # true: each seed draws its own stratified split (split_seed + seed index)
    tasks = ["digits", "fsdd"]     # or tables:  [tasks.fsdd]  frames = 30
    [model]      arch = "mlp"  hidden = [256, 256]  activation = ["relu", "tanh"]
    [budget]     epochs = 5        max_seconds = 60
    [schedule]   eval_every = 1    health_every = 20
                 timeout = 600     # wall seconds before a run is killed and recorded as failed (default:
                                   # 10 x budget.max_seconds + 300 where set, else 24 h); not part of the run id
    [learners.backprop]            # a label; `learner = "..."` names the registered rule
    lr = [1e-3, 1e-2]              # a list for a scalar option is a grid axis
    [learners.backprop.model]      # per-learner overrides of [model] and [budget]
    # in a learner table, tasks = ["digits"] restricts it to some of the study's task labels
    [targets]    digits = 0.95     # validation-accuracy target per task label (time to target)

Built-in studies live in ``experiments/plan/studies/NAME.toml`` and run by name.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from bpbench.experiments.plan.builtin import builtin_studies, read_toml
from bpbench.experiments.plan.config import ConfigError, build, grid, to_plain
from bpbench.experiments.plan.registry import Registry, UnknownNameError
from bpbench.experiments.plan.spec import Budget, RunSpec, Schedule, run_timeout
from bpbench.experiments.plan.tuning import TuningPlan, tuning_plan

TOP_KEYS = (
    "description",
    "seeds",
    "study_seed",
    "reference",
    "seeds_resample_split",
    "targets",
    "tasks",
    "model",
    "budget",
    "schedule",
    "learners",
    "tuning",
    "tracking",  # where runs are mirrored (front/tracking), not what runs: never in a run id
    "slurm",  # how runs are submitted (schedule/slurm_pool.py), not what runs
)
REFERENCE_LABEL = "backprop"  # the learner label Welch's test compares against unless `reference` names another
LEARNER_SECTION_KEYS = ("learner", "model", "budget", "tasks", "reference", "search")


@dataclass(frozen=True)
class Study:
    name: str
    raw: dict[str, Any]  # the study table after --set overrides
    runs: list[RunSpec]  # a tuned study: one base run per learner label x task (its trials are drawn from it)
    tuning: TuningPlan | None = None  # the [tuning] block and search spaces (experiments/plan/tuning.py)


def locate(name_or_path: str) -> tuple[str, Path]:
    """A built-in study name or a path to a TOML file -> (study name, path)."""
    builtins = builtin_studies()
    if name_or_path in builtins:
        return name_or_path, builtins[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"study file {name_or_path!r} does not exist")
        return path.stem, path
    raise ConfigError(
        f"unknown study {name_or_path!r}; built-in studies: {', '.join(sorted(builtins))}, or a path to a .toml file"
    )


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """``"budget.epochs=2"`` -> (["budget", "epochs"], 2). The value is TOML; a bare word is a string."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. budget.epochs=2")
    key, text = assignment.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # documented: a bare word is taken as a string (e.g. optimizer=sgd)
    except RecursionError as exc:
        raise ConfigError(f"--set {key.strip()}=...: the value is nested too deeply to read") from exc
    return path, value


Overrides = Mapping[str, Any] | Sequence[str]


def parse_overrides(overrides: Overrides | None) -> list[tuple[str, list[str], Any]]:
    """``["budget.epochs=2"]`` (``--set`` strings) or ``{"budget.epochs": 2}`` (values as they
    are) -> (how to name it in an error, key path, value) per override."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        out = []
        for key, value in overrides.items():
            path = [p for p in str(key).strip().split(".") if p]
            if not isinstance(key, str) or not path:
                raise ConfigError(f"override {key!r}: expected a dotted key such as 'budget.epochs'")
            out.append((f"override {key!r}", path, value))
        return out
    if isinstance(overrides, str) or not all(isinstance(a, str) for a in overrides):
        raise ConfigError(
            f"overrides = {overrides!r}: expected a dict {{'budget.epochs': 2}} or a list of 'KEY=VALUE' strings"
        )
    return [(f"--set {a!r}", *parse_set(a)) for a in overrides]


def apply_sets(raw: dict[str, Any], assignments: Overrides | None) -> dict[str, Any]:
    """A copy of ``raw`` with each override applied (tables created as needed)."""
    out = copy.deepcopy(raw)
    for where, path, value in parse_overrides(assignments):
        node = out
        for part in path[:-1]:
            if isinstance(node.get(part), list) and part == "tasks":
                node[part] = {name: {} for name in node[part]}  # list of names -> tables
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {part!r} is not a table")
        node[path[-1]] = value
    return out


MAX_SEEDS = 100_000  # seeds per configuration: beyond it a count is a typo, refused before any list is built


def _seed_indices(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value <= MAX_SEEDS:
            raise ConfigError(f"seeds = {value}: must be a count from 1 to {MAX_SEEDS} or a list of seed indices")
        return list(range(value))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return list(value)
    raise ConfigError(f"seeds = {value!r}: expected a positive count or a non-empty list of non-negative integers")


def _task_tables(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return {name: {} for name in value}
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return value
    raise ConfigError(f"tasks = {value!r}: expected a non-empty list of task names or tables of task options")


def study_reference(raw: dict[str, Any]) -> str:
    """The learner label a study's p-values compare against: ``reference``, default ``backprop``.

    A ``reference`` that is not one of the study's learner labels is a ConfigError. The
    default needs no such label (a study without one gets no p-values).
    """
    if "reference" not in raw:
        return REFERENCE_LABEL
    reference, labels = raw["reference"], sorted(raw.get("learners", {}))
    if not isinstance(reference, str) or reference not in labels:
        raise ConfigError(f"reference = {reference!r}: not a learner label of this study; allowed: {', '.join(labels)}")
    return reference


def study_references(raw: dict[str, Any]) -> dict[str, str]:
    """Learner label -> the label its p-values compare against.

    A learner table's own ``reference = "LABEL"`` (e.g. a tanh rule against a tanh backprop
    partner, so the p-value compares like with like), else the study's ``reference``
    (default ``backprop``). A per-learner reference must be another learner label of the
    study (ConfigError otherwise).
    """
    default, tables = study_reference(raw), raw.get("learners", {})
    out = {}
    for label, table in tables.items() if isinstance(tables, dict) else ():
        ref = table.get("reference", default) if isinstance(table, dict) else default
        if "reference" in (table if isinstance(table, dict) else {}) and (
            not isinstance(ref, str) or ref not in tables or ref == label
        ):
            raise ConfigError(
                f"learners.{label}.reference = {ref!r}: must be another learner label of this study; "
                f"allowed: {', '.join(sorted(set(tables) - {label}))}"
            )
        out[label] = ref
    return out


class TaskPoint(NamedTuple):
    """One point of a study task's grid: its label, registered name, options, grid axes and class."""

    label: str
    name: str
    params: dict[str, Any]
    axes: list[str]  # "task.OPTION" for each option the task's grid varies
    cls: Any


@dataclass(frozen=True)
class Common:
    """What every run of a study shares: its name, seed indices, study seed, schedule, timeout
    option, whether each seed resamples its split, and the tuning plan (None: a plain study)."""

    name: str
    seeds: list[int]
    study_seed: int
    schedule: dict[str, Any]
    timeout: Any
    resample: bool
    tuned: TuningPlan | None


def expand(name: str, raw: dict[str, Any], learners: Registry, tasks: Registry) -> Study:
    """Validate a study table and expand it into runs; raises ConfigError on any bad value.

    The steps: the top-level keys, what every run shares (``study_common``), the task grid
    (``task_points``), then each learner table's runs (``learner_runs``); no two runs alike.
    """
    _check_top_keys(name, raw)
    common = study_common(name, raw, learners)
    points = task_points(raw["tasks"], tasks)
    tables = raw["learners"]
    if not isinstance(tables, dict) or not tables or not all(isinstance(v, dict) for v in tables.values()):
        raise ConfigError(f"learners = {tables!r}: expected tables, e.g. [learners.backprop]")
    study_references(raw)  # every reference names a label of this study
    runs: list[RunSpec] = []
    for label, table in tables.items():
        runs += learner_runs(label, dict(table), raw, common, points, learners, tasks)
    if len({s.run_id for s in runs}) != len(runs):
        raise ConfigError(f"study {name} expands to duplicate runs; make each learner/task entry distinct")
    return Study(name, raw, runs, common.tuned)


def _registered(registry: Registry, name: str) -> Any:
    """The class registered as ``name``; a ConfigError naming the registered ones otherwise."""
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from exc


def _check_top_keys(name: str, raw: dict[str, Any]) -> None:
    """A ConfigError for an unknown top-level key or a missing ``tasks`` or ``learners``."""
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in study {name}; allowed: {', '.join(TOP_KEYS)}")
    for key in ("tasks", "learners"):
        if key not in raw:
            raise ConfigError(f"study {name} has no {key!r}; it needs at least one")


def study_common(name: str, raw: dict[str, Any], learners: Registry) -> Common:
    """The checked options every run of the study shares (``[tuning]``, seeds, schedule, targets)."""
    tuned = tuning_plan(raw, learners)  # None for a plain study; checks [tuning] and every search space
    seeds = [0] if tuned else _seed_indices(raw.get("seeds", 1))
    study_seed = raw.get("study_seed", 0)
    if not isinstance(study_seed, int) or isinstance(study_seed, bool):
        raise ConfigError(f"study_seed = {study_seed!r}: expected an integer")
    schedule_raw = dict(raw.get("schedule", {})) if isinstance(raw.get("schedule", {}), dict) else raw["schedule"]
    timeout = schedule_raw.pop("timeout", None) if isinstance(schedule_raw, dict) else None
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise ConfigError(f"schedule.timeout = {timeout!r}: expected seconds (a number > 0)")
    schedule = to_plain(build(Schedule, schedule_raw, "schedule"))  # (timeout is not hashed: not in the run id)
    resample = raw.get("seeds_resample_split", False)
    if not isinstance(resample, bool):
        raise ConfigError(f"seeds_resample_split = {resample!r}: expected true or false")
    _check_targets(raw.get("targets", {}), raw["tasks"])
    return Common(name, seeds, study_seed, schedule, timeout, resample, tuned)


def task_points(raw_tasks: Any, tasks: Registry) -> list[TaskPoint]:
    """Every point of every study task's grid, each checked by its task (files present, options valid)."""
    out: list[TaskPoint] = []
    for label, table in _task_tables(raw_tasks).items():
        table = dict(table)
        task_name = table.pop("task", label)
        task_cls = _registered(tasks, task_name)
        points = grid(task_cls.Params, table, f"tasks.{label}")
        axes = [f"task.{k}" for k, v in table.items() if len({repr(p[k]) for p in points}) > 1]
        for point in points:
            built = build(task_cls.Params, point, f"tasks.{label}")
            try:
                task_cls().check(built)
            except (FileNotFoundError, ImportError) as exc:
                raise ConfigError(f"tasks.{label}: {exc}") from exc
            out.append(TaskPoint(label, task_name, to_plain(built), axes, task_cls))
    return out


def learner_runs(
    label: str,
    table: dict[str, Any],
    raw: dict[str, Any],
    common: Common,
    points: list[TaskPoint],
    learners: Registry,
    tasks: Registry,
) -> list[RunSpec]:
    """The runs of one learner table: its model and option grids x its tasks x the seeds.

    ``table`` is the learner's table (a copy: its own keys are popped off it).
    """
    from bpbench.learners.models import ModelSpec  # torch: here, so reading results (tables) never loads it

    learner_name = table.pop("learner", label)
    table.pop("reference", None)  # checked by study_references
    table.pop("search", None)  # checked by tuning_plan
    learner_cls = _registered(learners, learner_name)
    only = _learner_tasks(label, table.pop("tasks", None), points, tasks)
    model_raw = {**raw.get("model", {}), **table.pop("model", {})}
    budget, limit = _budget(label, {**raw.get("budget", {}), **table.pop("budget", {})}, common.timeout)
    model_points = grid(ModelSpec, model_raw, f"learners.{label}.model")
    param_points = grid(learner_cls.Params, table, f"learners.{label}")
    varied = _varied(label, model_raw, model_points, table, param_points, points, common.tuned)
    runs: list[RunSpec] = []
    for model, params in _configurations(label, learner_cls, model_points, param_points):
        for point in points:
            if only is None or point.label in only:
                _check_arch(label, model, point)
                spec = RunSpec(
                    learner_name,
                    label,
                    params,
                    point.name,
                    point.label,
                    point.params,
                    to_plain(model),
                    budget,
                    common.schedule,
                    0,
                    common.study_seed,
                    varied=tuple(varied + point.axes),
                    study=common.name,
                    timeout=limit,
                )
                runs += [_seed_run(spec, seed_index, common.resample) for seed_index in common.seeds]
    return runs


def _configurations(
    label: str, learner_cls: Any, model_points: list[dict[str, Any]], param_points: list[dict[str, Any]]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(model spec, plain learner options) for each model x option grid point, checked by the learner."""
    from bpbench.learners.models import ModelSpec

    for model_point in model_points:
        model = build(ModelSpec, model_point, f"learners.{label}.model")
        for param_point in param_points:
            built = build(learner_cls.Params, param_point, f"learners.{label}")
            try:
                learner_cls.check_model(model, built)
            except ValueError as exc:
                raise ConfigError(f"learners.{label}: {exc}") from exc
            yield model, to_plain(built)


def _seed_run(spec: RunSpec, seed_index: int, resample: bool) -> RunSpec:
    """``spec`` for one seed index (with its own split when each seed resamples it)."""
    task_params = _seed_split(spec.task_params, seed_index, spec.task_label) if resample else spec.task_params
    return dataclasses.replace(spec, task_params=task_params, seed_index=seed_index)


def _budget(label: str, budget_raw: dict[str, Any], timeout: Any) -> tuple[dict[str, Any], float]:
    """A learner's checked budget and its runs' timeout (``spec.run_timeout``)."""
    budget = to_plain(build(Budget, budget_raw, f"learners.{label}.budget"))
    try:
        return budget, run_timeout(timeout, budget["max_seconds"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _learner_tasks(label: str, only: Any, points: list[TaskPoint], tasks: Registry) -> list[str] | None:
    """A learner table's ``tasks`` (the study task labels it runs on; None: all), checked."""
    known = {p.label for p in points} | set(tasks.names())  # (a --set of the study's tasks may drop some)
    if only is not None and (not isinstance(only, list) or not only or any(t not in known for t in only)):
        raise ConfigError(
            f"learners.{label}.tasks = {only!r}: expected a non-empty list of task labels; "
            f"allowed: {', '.join(sorted(known))}"
        )
    return only


def _varied(
    label: str,
    model_raw: dict[str, Any],
    model_points: list[dict[str, Any]],
    table: dict[str, Any],
    param_points: list[dict[str, Any]],
    points: list[TaskPoint],
    tuned: TuningPlan | None,
) -> list[str]:
    """The options a learner's runs vary ("model.X", "params.X"): its grid axes, or in a tuned
    study (which has no grids: a ConfigError) its search space's."""
    varied = [f"model.{k}" for k in model_raw if len({repr(p[k]) for p in model_points}) > 1]
    varied += [f"params.{k}" for k in table if len({repr(p[k]) for p in param_points}) > 1]
    grids = varied + [axis for point in points for axis in point.axes]
    if tuned and grids:
        raise ConfigError(
            f"learners.{label}: a tuned study has no grids ({grids[0]} "
            "is a list); give choices in [learners.{label}.search] instead"
        )
    if tuned:
        return [k if k.startswith("model.") else f"params.{k}" for k in tuned.spaces[label]]
    return varied


def _check_arch(label: str, model: Any, point: TaskPoint) -> None:
    """A ConfigError for a convolutional model on a task whose inputs are not images."""
    if model.arch != "mlp" and point.cls.modality != "image":
        raise ConfigError(
            f"learners.{label}.model.arch = {model.arch!r} on task {point.label!r} "
            f"({point.cls.modality}): allowed only on image tasks; use arch = 'mlp'"
        )


def _seed_split(task_params: dict[str, Any], seed_index: int, task_label: str) -> dict[str, Any]:
    """``task_params`` with its own split for this seed: split_seed + seed index."""
    if "split_seed" not in task_params:
        raise ConfigError(
            f"seeds_resample_split = true: task {task_label!r} has no split_seed option to vary; "
            "allowed only for tasks whose parameters have split_seed"
        )
    return {**task_params, "split_seed": task_params["split_seed"] + seed_index}


def _check_targets(targets: Any, tasks: Any) -> None:
    """A ConfigError unless ``targets`` maps the study's task labels to accuracies in (0, 1]."""
    labels = sorted(_task_tables(tasks))
    if not isinstance(targets, dict):
        raise ConfigError(
            f"targets = {targets!r}: expected a table of task label = accuracy, e.g. [targets] digits = 0.95"
        )
    for task, value in targets.items():
        if task not in labels:
            raise ConfigError(f"targets.{task}: not a task label of this study; allowed: {', '.join(map(str, labels))}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
            raise ConfigError(f"targets.{task} = {value!r}: expected a validation accuracy in (0, 1]")


def load_study(
    source: str | Path | Mapping[str, Any],
    sets: Overrides | None,
    learners: Registry,
    tasks: Registry,
    name: str | None = None,
) -> Study:
    """Locate, read, override and expand a study (all validation happens here).

    ``source``: a built-in study name, a path to a TOML file, or a dict with the TOML
    file's structure (named ``name``, default "study"; a file is named by its stem).
    """
    if isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
        name = name or "study"
    elif isinstance(source, (str, Path)):
        found, path = locate(str(source))
        raw, name = read_toml(path), name or found
    else:
        raise ConfigError(f"study = {source!r}: expected a built-in study name, a path to a .toml file, or a dict")
    return expand(name, apply_sets(raw, sets), learners, tasks)
