"""Is a ``meta.json`` (or a compacted run's meta) what bpbench wrote? ``meta_problem`` says what is wrong.

Every reader of a results folder asks this before it uses a meta, so one bad file is one
warning naming it, never a traceback. A meta is accepted when it is a table with a run id,
a status ("ok" | "failed") and a spec whose fields have the types bpbench writes, and when
its run id is the hash of that spec (``RunSpec.run_id``): a run id that is a path (``/srv``,
``../x``) or belongs to another spec is refused. Its values are then checked for type and range
(``record_schema``: widths, options, tuning tag, summary, stored measures), so a forged record
with a valid run id costs one warning naming the field, never a traceback in a reader.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store import records
from bpbench.experiments.store.record_schema import measures_problem, record_problem, row_limit
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
    return measures_problem(values)  # keyed by the catalog's public column names; types and ranges


METRIC_TYPES = {
    "run_id": pa.types.is_string,
    "epoch": pa.types.is_integer,
    "step": pa.types.is_integer,
    "split": pa.types.is_string,
    "metric": pa.types.is_string,
    "layer": pa.types.is_string,
    "value": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
}


def columns_problem(path: Any, schema: pa.Schema) -> str | None:
    """Why a metrics file's columns are not bpbench's (None: they are); read from its footer."""
    for name, accepted in METRIC_TYPES.items():
        index = schema.get_field_index(name)
        if index < 0:
            return f"{path}: column {name!r} is missing"
        kind = schema.field(index).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_large_string(kind):
            kind = pa.string()
        if not accepted(kind):
            return f"{path}: column {name!r} holds {kind}, not what bpbench writes"
    return None


def rows_problem(path: Any, rows: int, meta: dict[str, Any]) -> str | None:
    """Why ``rows`` metric rows are more than the run's budget allows (None: they are not)."""
    limit = row_limit(meta)
    if rows > limit:
        return f"{path} holds {rows} rows, more than its budget allows ({limit}): not read"
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
    return record_problem(meta) or _measures_problem(meta)
