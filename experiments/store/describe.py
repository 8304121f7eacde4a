"""What a run was, from its ``meta.json``: labels, configuration, budget; one row per run.

``run_row(meta)`` is the row every view (table, figures, compacted dataset) starts from;
``varied_label(spec)`` names the configuration (the grid values that vary, e.g. ``lr=0.001``).
"""
from __future__ import annotations

import json
import math
from typing import Any


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
    values = {name: compact_value(value) for section in ("task_params", "model", "params")
              for name, value in spec[section].items()}
    return json.dumps(values, sort_keys=True)


def run_row(meta: dict[str, Any]) -> dict[str, Any]:
    """What a run was (labels, model, budget) and what stopped it, from its meta."""
    spec = meta["spec"]
    model, params = spec["model"], spec["params"]
    return {
        "run_id": meta["run_id"], "learner": spec["label"], "learner_name": spec["learner"],
        "config": varied_label(spec), "task": spec["task_label"], "seed": spec["seed_index"],
        "arch": model["arch"], "depth": len(model["hidden"]), "activation": model["activation"],
        "batchnorm": model["batchnorm"], "dropout": model["dropout"],
        "lr": params.get("lr", math.nan), "sigma": params.get("sigma", math.nan),
        "train_fraction": spec["task_params"].get("train_fraction", math.nan),
        "budget": budget_text(spec["budget"]), "stopped_by": meta.get("summary", {}).get("stopped_by", "?"),
        "values": option_values(spec),
        "chance": meta.get("summary", {}).get("chance_accuracy", math.nan),  # the test split's majority share
    }


def failed_row(meta: dict[str, Any]) -> dict[str, Any]:
    """The labels of a failed run (it has no measures), from its meta."""
    spec = meta["spec"]
    return {"learner": spec["label"], "config": varied_label(spec), "task": spec["task_label"],
            "learner_name": spec["learner"], "budget": budget_text(spec["budget"])}
