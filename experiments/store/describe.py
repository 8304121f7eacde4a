"""What a run was, from its ``meta.json``: labels, configuration, budget; one row per run.

``run_row(meta)`` is the row every view (table, figures, compacted dataset) starts from;
``varied_label(spec)`` names the configuration (the grid values that vary, e.g. ``lr=0.001``).

One schema: every view a user reads (``Results.summary``, ``Results.metrics``, meta.json's
``measures``, the compacted dataset) names a thing as the run's spec does: ``label`` (the
study's name for the learner configuration), ``learner`` (registered name), ``configuration``,
``task`` (registered name), ``task_label``, ``seed``, and each measure by its catalog
``column`` (``test_accuracy``, ``train_flops``, ...). The table and figure code inside
bpbench still uses its older short names (``learner`` for the label, ``learner_name``,
``config``, ``task`` for the task label, ``test_acc``, ...); ``public`` renames a frame of
them, through ``PUBLIC_NAMES`` and the measurement catalog, and is the one place the two meet.

``separate_configs(rows, specs)`` keeps runs whose specs differ beyond the seed apart: where
one (learner, config, task) label covers runs of different settings (a study re-run into a
folder with another budget, say), it appends the differing values to their config labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bpbench.experiments.plan import catalog

# run_row's internal column -> its public name (measures: the catalog's name -> column)
PUBLIC_NAMES = {
    "learner": "label",
    "learner_name": "learner",
    "config": "configuration",
    "task": "task_label",
    "task_name": "task",
}


def public_names() -> dict[str, str]:
    """Every internal column name that differs from its public one -> the public one."""
    return {**PUBLIC_NAMES, **{m.name: m.column for m in catalog.CATALOG if m.name != m.column}}


def public(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (rows of ``run_row``, with per-run measures or metric rows) with public column names."""
    return frame.rename(columns=public_names())


def budget_text(budget: dict[str, Any]) -> str:
    """A run's budget as its set limits, e.g. ``'1e+10 FLOPs / 1000 ep'``."""
    parts = []
    if budget.get("flops") is not None:
        parts.append(f"{budget['flops']:.3g} FLOPs")
    if budget.get("samples") is not None:
        parts.append(f"{budget['samples']} samples")
    if budget.get("max_seconds") is not None:
        parts.append(f"{budget['max_seconds']:g} s")
    parts.append(f"{budget['epochs']} ep")
    return " / ".join(parts)


def varied_label(spec: dict[str, Any]) -> str:
    """The configuration's label: the study's varied options as ``name=value``, comma-joined."""
    parts = []
    for key in spec.get("varied", []):
        section, name = key.split(".", 1)
        source = {"model": spec["model"], "params": spec["params"], "task": spec["task_params"]}[section]
        parts.append(f"{name}={compact_value(source[name])}")
    return ", ".join(parts)


def compact_value(value: Any) -> str:
    """A config value for a label: a list of equal widths as 'NxW' (e.g. 10x64), others 'a-b-c'."""
    if not isinstance(value, list):
        return str(value)
    if not value:
        return "none"
    if len(set(value)) == 1 and len(value) > 1:
        return f"{len(value)}x{value[0]}"
    return "-".join(map(str, value))


def option_values(spec: dict[str, Any]) -> str:
    """Every option of a run as the config labels write them ({"lr": "0.001", "arch": "mlp", ...}), as JSON."""
    values = {
        name: compact_value(value)
        for section in ("task_params", "model", "params")
        for name, value in spec[section].items()
    }
    return json.dumps(values, sort_keys=True)


def depth(model: Mapping[str, Any]) -> int:
    """A run's depth: a ResNet's number of weight layers (``model.depth``, 6n + 2); any other
    architecture's number of fully connected hidden layers (``len(model.hidden)``)."""
    return int(model["depth"]) if model["arch"] == "resnet" else len(model["hidden"])


def run_row(meta: dict[str, Any]) -> dict[str, Any]:
    """What a run was (labels, model, budget) and what stopped it, from its meta."""
    spec = meta["spec"]
    model, params = spec["model"], spec["params"]
    return {
        "run_id": meta["run_id"],
        "learner": spec["label"],
        "learner_name": spec["learner"],
        "config": varied_label(spec),
        "task": spec["task_label"],
        "task_name": spec["task"],
        "seed": spec["seed_index"],
        "arch": model["arch"],
        "depth": depth(model),
        "activation": model["activation"],
        "batchnorm": model["batchnorm"],
        "dropout": model["dropout"],
        "lr": params.get("lr", math.nan),
        "sigma": params.get("sigma", math.nan),
        "train_fraction": spec["task_params"].get("train_fraction", math.nan),
        "budget": budget_text(spec["budget"]),
        "stopped_by": meta.get("summary", {}).get("stopped_by", "?"),
        "values": option_values(spec),
        "chance": meta.get("summary", {}).get("chance_accuracy", math.nan),  # the test split's majority share
    }


def failed_row(meta: dict[str, Any]) -> dict[str, Any]:
    """The labels of a failed run (it has no measures), from its meta."""
    spec = meta["spec"]
    return {
        "learner": spec["label"],
        "config": varied_label(spec),
        "task": spec["task_label"],
        "learner_name": spec["learner"],
        "budget": budget_text(spec["budget"]),
    }


SEED_ONLY = (
    "seed_index",
    "label",
    "task_label",
    "varied",
    "study",
    "timeout",  # what may differ within one row
    "tuning",
)  # a tuned study's trial marks: its tables pick the final runs themselves (report/tuning.py)


def setting(spec: dict[str, Any]) -> dict[str, str]:
    """Everything that determines a run except its seed, flattened: {"budget.epochs": "20", ...}."""
    out: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                walk(inner, f"{key}.{name}" if key else str(name))
        else:
            out[key] = compact_value(value) if isinstance(value, list) else json.dumps(value)

    walk({k: v for k, v in spec.items() if k not in SEED_ONLY}, "")
    return out


def _short_key(key: str) -> str:
    return key.removeprefix("params.").replace("task_params.", "task.")


def separate_configs(rows: list[dict[str, Any]], settings: list[dict[str, str]]) -> None:
    """Append to ``rows[i]["config"]`` the settings that tell its run apart from runs sharing its
    (learner, config, task) label; rows whose label covers one setting are left as they are."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row["learner"], row["config"], row["task"]), []).append(i)
    for members in groups.values():
        distinct = {json.dumps(settings[i], sort_keys=True) for i in members}
        if len(distinct) < 2:
            continue
        keys = sorted({k for i in members for k in settings[i]})
        differ = [k for k in keys if len({settings[i].get(k) for i in members}) > 1]
        for i in members:
            extra = ", ".join(f"{_short_key(k)}={settings[i].get(k, 'unset').strip(chr(34))}" for k in differ)
            rows[i]["config"] = f"{rows[i]['config']}, {extra}" if rows[i]["config"] else extra


def wall_per_cpu(meta: dict[str, Any]) -> float:
    """A run's wall seconds per CPU second (NaN when not recorded): far above 1 for a one-thread
    run means it waited for the CPU, so its timings measure contention."""
    wall, cpu = meta.get("wall_seconds"), meta.get("cpu_seconds")
    if not isinstance(wall, (int, float)) or not isinstance(cpu, (int, float)) or cpu <= 0:
        return math.nan
    return float(wall) / float(cpu)
