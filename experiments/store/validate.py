"""Is a ``meta.json`` (or a compacted run's meta) what bpbench wrote? ``meta_problem`` says what is wrong.

Every reader of a results folder asks this before it uses a meta, so one bad file is one
warning naming it, never a traceback. A meta is accepted when it is a table with a run id,
a status ("ok" | "failed") and a spec whose fields have the types bpbench writes, and when
its run id is the hash of that spec (``RunSpec.run_id``): a run id that is a path (``/srv``,
``../x``) or belongs to another spec is refused.
"""

from __future__ import annotations

import math
from typing import Any

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store import records
from bpbench.experiments.store.safe_paths import valid_run_id

STATUSES = ("ok", "failed")
SPEC_TYPES: dict[str, type | tuple[type, ...]] = {
    "learner": str,
    "label": str,
    "params": dict,
    "task": str,
    "task_label": str,
    "task_params": dict,
    "model": dict,
    "budget": dict,
    "schedule": dict,
    "seed_index": int,
    "study_seed": int,
}
MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "arch": str,
    "hidden": list,
    "activation": str,
    "batchnorm": bool,
    "dropout": (int, float),
}
BUDGET_LIMITS = ("max_seconds", "samples", "flops")
MAX_INT = 2**63  # seed indices and counts beyond this are not ones bpbench wrote


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind in (int, (int, float)):
        return False
    return isinstance(value, kind) and not (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT
    )


def spec_problem(spec: Any) -> str | None:
    """What is wrong with a stored spec (None: nothing)."""
    if not isinstance(spec, dict):
        return f"spec is {type(spec).__name__}, not a table"
    for key, kind in SPEC_TYPES.items():
        if key not in spec:
            return f"spec lacks {key!r}"
        if not _is(spec[key], kind):
            return f"spec.{key} = {str(spec[key])[:40]!r} is not a {getattr(kind, '__name__', kind)}"
    for key, kind in MODEL_KEYS.items():
        if not _is(spec["model"].get(key), kind):
            return f"spec.model.{key} is missing or not a {getattr(kind, '__name__', kind)}"
    budget = spec["budget"]
    if not _is(budget.get("epochs"), int):
        return "spec.budget.epochs is missing or not an integer"
    for key in BUDGET_LIMITS:
        value = budget.get(key)
        if value is not None and not (_is(value, (int, float)) and math.isfinite(value)):
            return f"spec.budget.{key} = {value!r} is not a finite number"
    varied = spec.get("varied", [])
    sections = {"model": spec["model"], "params": spec["params"], "task": spec["task_params"]}
    if not isinstance(varied, list) or not all(isinstance(k, str) for k in varied):
        return "spec.varied is not a list of names"
    for key in varied:
        section, _, name = key.partition(".")
        if section not in sections or name not in sections[section]:
            return f"spec.varied names {key!r}, which the spec does not hold"
    if not isinstance(spec.get("study", ""), str):
        return "spec.study is not a string"
    return None


def _measures_problem(meta: dict[str, Any]) -> str | None:
    stored = meta.get("measures")
    if stored is None:
        return None  # a folder written before records existed: computed from the run's rows
    if not isinstance(stored, dict) or stored.get("version") not in records.READ_VERSIONS:
        version = stored.get("version") if isinstance(stored, dict) else stored
        return (
            f"measures version {str(version)[:20]!r}: this bpbench reads versions "
            f"{', '.join(map(str, records.READ_VERSIONS))}"
        )
    values = stored.get("values")
    if not isinstance(values, dict):
        return "measures.values is not a table"
    for name in records.columns():  # a record is keyed by the catalog's public column names
        value = values.get(name, "missing")
        if value == "missing":
            return f"measures.values has no {name}"
        if value is not None and not isinstance(value, (int, float)):
            return f"measures.values.{name} = {str(value)[:20]!r} is not a number"
    return None


def meta_problem(meta: Any, folder: str | None = None) -> str | None:
    """What is wrong with a run's meta (None: it can be used). ``folder``: the name of the run
    folder it was read from, which must be its run id."""
    if not isinstance(meta, dict):
        return f"it holds a {type(meta).__name__}, not a table"
    run_id = meta.get("run_id")
    if not valid_run_id(run_id):
        return f"run_id {str(run_id)[:60]!r} is not a run id (16 hex digits)"
    if folder is not None and folder != run_id:
        return f"run_id {run_id} differs from its folder's name {folder[:60]!r}"
    if meta.get("status") not in STATUSES:
        return f"status {str(meta.get('status'))[:20]!r} is not one of {', '.join(STATUSES)}"
    problem = spec_problem(meta.get("spec"))
    if problem is not None:
        return problem
    try:
        expected = RunSpec.from_json(meta["spec"]).run_id
    except TypeError as exc:  # unknown spec fields
        return f"spec does not describe a run ({exc})"
    if expected != run_id:
        return f"run_id {run_id} is not the hash of its spec ({expected})"
    if "summary" in meta and not isinstance(meta["summary"], dict):
        return "summary is not a table"
    return _measures_problem(meta)
