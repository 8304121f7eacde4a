"""``TrackedRun`` records from what the store holds: a run's meta and metric rows, or one row of a
published folder's ``runs.csv`` (final measures only: published folders keep no curves)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from bpbench.experiments.front.tracking.base import TrackedRun
from bpbench.experiments.plan import catalog
from bpbench.experiments.store.run_store import RunStore

# (split, metric) of the rows -> the curve's name; evaluated at the study's evaluation schedule
CURVES = {
    ("train", "loss"): "train_loss",
    ("train", "accuracy"): "train_accuracy",
    ("val", "loss"): "val_loss",
    ("val", "accuracy"): "val_accuracy",
    ("test", "loss"): "test_loss",
    ("test", "accuracy"): "test_accuracy",
    ("train", "train_flops"): "train_flops",
    ("train", "train_seconds"): "train_seconds",
    ("train", "train_samples"): "train_samples",
}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def spec_params(spec: dict[str, Any]) -> dict[str, str]:
    """A run spec's parameters: label, learner, task, seed, and its configuration."""
    params = {
        "label": spec.get("label", ""),
        "learner": spec.get("learner", ""),
        "task": spec.get("task_label", spec.get("task", "")),
        "seed": spec.get("seed_index", ""),
    }
    for key, value in (spec.get("params") or {}).items():
        params[f"config.{key}"] = value
    for section in ("model", "budget"):
        for key, value in (spec.get(section) or {}).items():
            params[f"{section}.{key}"] = value
    return {k: _text(v) for k, v in params.items()}


def from_store(store: RunStore, meta: dict[str, Any], study: str) -> TrackedRun:
    """The tracked form of a stored run (``meta`` from the store's readers)."""
    spec = meta["spec"]
    tags = {"study": study, "run_id": meta["run_id"], "status": meta["status"]}
    commit = (meta.get("git") or {}).get("commit")
    if commit:
        tags["commit"] = str(commit)
    if spec.get("tuning"):
        tags["phase"] = str(spec["tuning"].get("phase", ""))
        tags["trial"] = str(spec["tuning"].get("trial", ""))
    if meta.get("error"):
        tags["error"] = str(meta["error"])[:500]
    values = (meta.get("measures") or {}).get("values") or {}
    final = {k: n for k, v in values.items() if (n := _number(v)) is not None}
    rows = store.metrics([meta["run_id"]]) if meta["status"] == "ok" else pd.DataFrame()
    return TrackedRun(meta["run_id"], run_name(spec), spec_params(spec), tags, final, curves(rows))


def curves(rows: pd.DataFrame) -> list[tuple[str, int, float]]:
    """(curve, epoch, value) of the network-level rows (layer "") named in ``CURVES``."""
    if rows.empty:
        return []
    whole = rows[rows["layer"] == ""]
    out = []
    for split, metric, epoch, value in whole[["split", "metric", "epoch", "value"]].itertuples(index=False):
        name = CURVES.get((split, metric))
        if name is not None and (number := _number(value)) is not None:
            out.append((name, int(epoch), number))
    return out


def run_name(spec: dict[str, Any]) -> str:
    return f"{spec.get('label')} on {spec.get('task_label', spec.get('task'))}, seed {spec.get('seed_index')}"


def from_published(row: dict[str, Any], study: str) -> TrackedRun:
    """The tracked form of one ``runs.csv`` row of a published folder: its measures under their public
    names, as a stored run's (a runs.csv published before it used the public names: the tables' short
    names, read as such)."""
    if "label" in row:  # the public names (Results.summary's)
        spec = {"label": row.get("label"), "learner": row.get("learner"), "task_label": row.get("task_label")}
        row = {**row, **{m.name: row.get(m.column) for m in catalog.CATALOG}}
    else:
        spec = {"label": row.get("learner"), "learner": row.get("learner_name"), "task_label": row.get("task")}
    spec["seed_index"] = row.get("seed")
    params = spec_params(spec)
    try:
        config = json.loads(row["values"]) if isinstance(row.get("values"), str) else {}
    except ValueError:
        config = {}
    params.update({f"config.{k}": _text(v) for k, v in config.items()} if isinstance(config, dict) else {})
    tags = {"study": study, "run_id": str(row["run_id"]), "status": "ok"}
    if isinstance(row.get("commit"), str):
        tags["commit"] = row["commit"]
    final = {m.column: n for m in catalog.CATALOG if (n := _number(row.get(m.name))) is not None}
    return TrackedRun(str(row["run_id"]), run_name(spec), params, tags, final, [])
