"""The types and ranges of what a run's meta holds beyond its spec's shape: one place every reader checks.

``validate.meta_problem`` calls ``record_problem(meta)`` after the spec's fields and the run id:
the model's widths, the learner's and task's options (scalars, or flat lists of scalars), the
tuning tag, the summary's fields and the stored measures (types and ranges: an accuracy in
[0, 1], a count >= 0, a flag true or false, no NaN, infinity only where the range is unbounded).
``row_limit(meta)`` bounds the tidy rows a run can have written under its budget, so a file
claiming more (an 816 KB parquet holding 30 M rows) is refused before it is read. Each problem names the field
(``summary.stopped_by``, ``spec.params.lr``, ``measures.values.test_accuracy``).
"""

from __future__ import annotations

import math
from typing import Any

from bpbench.experiments.plan import catalog

SCALARS = (str, int, float, bool, type(None))
UNIT = (0.0, 1.0)
NONNEGATIVE = (0.0, math.inf)
SIGNED_UNIT = (-1.0, 1.0)
ANY = (-math.inf, math.inf)
# measure column -> allowed closed range (columns not named: any number but NaN)
MEASURE_RANGES: dict[str, tuple[float, float]] = {
    "test_accuracy": UNIT,
    "val_accuracy": UNIT,
    "train_test_gap": SIGNED_UNIT,
    "train_seconds": NONNEGATIVE,
    "train_flops": NONNEGATIVE,
    "train_samples": NONNEGATIVE,
    "synops_per_sample": NONNEGATIVE,
    "energy_per_sample_j": NONNEGATIVE,
    "peak_memory_bytes": NONNEGATIVE,
    "grad_norm_ratio": NONNEGATIVE,
    "grad_alignment_mean": SIGNED_UNIT,
}
# summary field -> (kind, range); None values are allowed for every field ("not measured")
SUMMARY_FIELDS: dict[str, tuple[str, tuple[float, float]]] = {
    "stopped_by": ("str", ANY),
    "test_accuracy": ("number", UNIT),
    "chance_accuracy": ("number", UNIT),
    "epochs_completed": ("int", NONNEGATIVE),
    "steps": ("int", NONNEGATIVE),
    "train_seconds": ("number", NONNEGATIVE),
    "train_flops": ("number", NONNEGATIVE),
    "peak_memory_bytes": ("number", NONNEGATIVE),
    "state_bytes": ("number", NONNEGATIVE),
    "train_eval_samples": ("int", NONNEGATIVE),
    "n_classes": ("int", NONNEGATIVE),
}
TUNING_PHASES = ("tuning", "final", "default")
MAX_STEPS = 10**9  # a run's steps beyond this are not ones bpbench wrote
ROWS_PER_EVALUATION = 2_000  # splits x metrics x layers of one evaluation, generously
ROWS_PER_HEALTH_SAMPLE = 4_000  # layers x gradient-health metrics of one sample, generously
STEPS_PER_EPOCH = 100_000  # when the summary does not say how many steps ran (batch 1 on 60,000 samples: 60,000)


def number_problem(where: str, value: Any, bounds: tuple[float, float], integer: bool = False) -> str | None:
    """Why ``value`` is not a number (an integer when ``integer``) within ``bounds`` (None: it is)."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        return f"{where} = {str(value)[:40]!r} is not {'an integer' if integer else 'a number'}"
    low, high = bounds
    if math.isnan(value) or not low <= value <= high:  # infinity only where the range is unbounded
        allowed = "a number" if bounds == ANY else f"in [{low:g}, {high:g}]"
        return f"{where} = {value!r} is out of range ({allowed})"
    return None


def _options_problem(where: str, options: dict[str, Any]) -> str | None:
    for key, value in options.items():
        flat = isinstance(value, list) and all(isinstance(v, SCALARS) for v in value)
        if not (isinstance(value, SCALARS) or flat) or (isinstance(value, float) and math.isnan(value)):
            return f"{where}.{key} = {str(value)[:40]!r} is not a scalar or a flat list of scalars"
    return None


def spec_values_problem(spec: dict[str, Any]) -> str | None:
    """The spec's values beyond their top-level types: widths, options, tuning tag."""
    for key in ("hidden", "channels"):
        widths = spec["model"].get(key, [])
        if not isinstance(widths, list) or not all(
            isinstance(w, int) and not isinstance(w, bool) and 0 < w < 2**31 for w in widths
        ):
            return f"spec.model.{key} = {str(widths)[:40]!r} is not a list of positive integers"
    for section in ("params", "task_params"):
        problem = _options_problem(f"spec.{section}", spec[section])
        if problem:
            return problem
    tag = spec.get("tuning")
    if tag is not None:
        if not isinstance(tag, dict) or tag.get("phase") not in TUNING_PHASES:
            return f"spec.tuning = {str(tag)[:40]!r} is not a tuning tag (a table with phase tuning, final or default)"
        trial = tag.get("trial")
        if trial is not None and (isinstance(trial, bool) or not isinstance(trial, int) or trial < 0):
            return f"spec.tuning.trial = {str(trial)[:20]!r} is not a trial number"
        if not isinstance(tag.get("sampler", ""), str):
            return "spec.tuning.sampler is not a string"
    return None


def summary_problem(summary: Any) -> str | None:
    """What is wrong with a meta's summary (None: nothing)."""
    if not isinstance(summary, dict):
        return "summary is not a table"
    for key, (kind, bounds) in SUMMARY_FIELDS.items():
        value = summary.get(key)
        if value is None:
            continue
        if kind == "str":
            if not isinstance(value, str):
                return f"summary.{key} = {str(value)[:40]!r} is not a string"
            continue
        problem = number_problem(f"summary.{key}", value, bounds, integer=kind == "int")
        if problem:
            return problem
    return None


def measures_problem(values: dict[str, Any]) -> str | None:
    """What is wrong with a stored measures record's values (None: nothing)."""
    for measure in catalog.CATALOG:
        value = values.get(measure.column)
        if value is None:
            continue
        if measure.flag:
            if not isinstance(value, bool):
                return f"measures.values.{measure.column} = {str(value)[:20]!r} is not true or false"
            continue
        problem = number_problem(f"measures.values.{measure.column}", value, MEASURE_RANGES.get(measure.column, ANY))
        if problem:
            return problem
    return None


def record_problem(meta: dict[str, Any]) -> str | None:
    """The values of a meta whose spec has the right shape (see the module doc); None: usable."""
    problem = spec_values_problem(meta["spec"])
    if problem is None and "summary" in meta:
        problem = summary_problem(meta["summary"])
    return problem


def row_limit(meta: dict[str, Any]) -> int:
    """The most tidy metric rows a run of ``meta``'s budget can have written."""
    spec = meta["spec"]
    epochs = int(spec["budget"]["epochs"])
    steps = meta.get("summary", {}).get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_STEPS:
        steps = epochs * STEPS_PER_EPOCH
    every = spec["schedule"].get("health_every", 1)
    every = every if isinstance(every, int) and not isinstance(every, bool) and every > 0 else 1
    return ROWS_PER_EVALUATION * (epochs + 2) + ROWS_PER_HEALTH_SAMPLE * (steps // every + epochs + 2)


STUDY_TABLES = ("learners", "model", "budget", "schedule", "tuning", "targets", "task_params")


def study_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a study record (``study-<name>.json``) beyond its name and table (None: nothing)."""
    runs = record.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, str) and len(r) == 16 for r in runs):
        return "runs is not a list of run ids"
    study = record["study"]
    for key in STUDY_TABLES:
        if key in study and not isinstance(study[key], dict):
            return f"study.{key} = {str(study[key])[:40]!r} is not a table"
    return None
