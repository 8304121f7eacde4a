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

Built-in studies live in ``experiments/studies/NAME.toml`` and run by name.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def expand(name: str, raw: dict[str, Any], learners: Registry, tasks: Registry) -> Study:
    """Validate a study table and expand it into runs; raises ConfigError on any bad value."""
    from bpbench.learners.models import ModelSpec  # torch: here, so reading results (tables) never loads it

    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in study {name}; allowed: {', '.join(TOP_KEYS)}")
    for key in ("tasks", "learners"):
        if key not in raw:
            raise ConfigError(f"study {name} has no {key!r}; it needs at least one")
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

    task_points: list[tuple[str, str, dict[str, Any], list[str], Any]] = []
    for label, table in _task_tables(raw["tasks"]).items():
        table = dict(table)
        task_name = table.pop("task", label)
        try:
            task_cls = tasks.get(task_name)
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from exc
        points = grid(task_cls.Params, table, f"tasks.{label}")
        axes = [f"task.{k}" for k, v in table.items() if len({repr(p[k]) for p in points}) > 1]
        for point in points:
            built = build(task_cls.Params, point, f"tasks.{label}")
            try:
                task_cls().check(built)
            except (FileNotFoundError, ImportError) as exc:
                raise ConfigError(f"tasks.{label}: {exc}") from exc
            params = to_plain(built)
            task_points.append((label, task_name, params, axes, task_cls))

    learner_tables = raw["learners"]
    if (
        not isinstance(learner_tables, dict)
        or not learner_tables
        or not all(isinstance(v, dict) for v in learner_tables.values())
    ):
        raise ConfigError(f"learners = {learner_tables!r}: expected tables, e.g. [learners.backprop]")
    study_references(raw)  # every reference names a label of this study
    runs: list[RunSpec] = []
    for label, table in learner_tables.items():
        table = dict(table)
        learner_name = table.pop("learner", label)
        table.pop("reference", None)  # checked by study_references above
        table.pop("search", None)  # checked by tuning_plan above
        try:
            learner_cls = learners.get(learner_name)
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from exc
        only = table.pop("tasks", None)  # optional: run this learner only on these study task labels
        known = {t[0] for t in task_points} | set(tasks.names())  # (a --set of the study's tasks may drop some)
        if only is not None and (not isinstance(only, list) or not only or any(t not in known for t in only)):
            raise ConfigError(
                f"learners.{label}.tasks = {only!r}: expected a non-empty list of task labels; "
                f"allowed: {', '.join(sorted(known))}"
            )
        model_raw = {**raw.get("model", {}), **table.pop("model", {})}
        budget_raw = {**raw.get("budget", {}), **table.pop("budget", {})}
        budget = to_plain(build(Budget, budget_raw, f"learners.{label}.budget"))
        try:
            limit = run_timeout(timeout, budget["max_seconds"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        model_points = grid(ModelSpec, model_raw, f"learners.{label}.model")
        param_points = grid(learner_cls.Params, table, f"learners.{label}")
        varied = [f"model.{k}" for k in model_raw if len({repr(p[k]) for p in model_points}) > 1]
        varied += [f"params.{k}" for k in table if len({repr(p[k]) for p in param_points}) > 1]
        grids = varied + [axis for point in task_points for axis in point[3]]
        if tuned and grids:
            raise ConfigError(
                f"learners.{label}: a tuned study has no grids ({grids[0]} "
                "is a list); give choices in [learners.{label}.search] instead"
            )
        if tuned:
            varied = [k if k.startswith("model.") else f"params.{k}" for k in tuned.spaces[label]]
        for model_point in model_points:
            model = build(ModelSpec, model_point, f"learners.{label}.model")
            for param_point in param_points:
                built = build(learner_cls.Params, param_point, f"learners.{label}")
                try:
                    learner_cls.check_model(model, built)
                except ValueError as exc:
                    raise ConfigError(f"learners.{label}: {exc}") from exc
                params = to_plain(built)
                for task_label, task_name, task_params, task_axes, task_cls in task_points:
                    if only is not None and task_label not in only:
                        continue
                    if model.arch != "mlp" and task_cls.modality != "image":
                        raise ConfigError(
                            f"learners.{label}.model.arch = {model.arch!r} on task {task_label!r} "
                            f"({task_cls.modality}): allowed only on image tasks; use arch = 'mlp'"
                        )
                    for seed_index in seeds:
                        runs.append(
                            RunSpec(
                                learner=learner_name,
                                label=label,
                                params=params,
                                task=task_name,
                                task_label=task_label,
                                task_params=_seed_split(task_params, seed_index, task_label)
                                if resample
                                else task_params,
                                model=to_plain(model),
                                budget=budget,
                                schedule=schedule,
                                seed_index=seed_index,
                                study_seed=study_seed,
                                varied=tuple(varied + task_axes),
                                study=name,
                                timeout=limit,
                            )
                        )
    if len({s.run_id for s in runs}) != len(runs):
        raise ConfigError(f"study {name} expands to duplicate runs; make each learner/task entry distinct")
    return Study(name, raw, runs, tuned)


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
