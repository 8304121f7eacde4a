"""Results folders made by hand for the folder-safety tests: runs stored as bpbench stores them,
without training (fast), and helpers to tamper with them as a hostile sender would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store.run_store import RunStore

MODEL = {"arch": "mlp", "hidden": [8], "channels": [16, 32], "activation": "relu", "batchnorm": False, "dropout": 0.0}


def spec(label: str = "backprop", seed: int = 0, epochs: int = 2, lr: float = 0.01) -> RunSpec:
    """A plausible run spec (backprop on digits), never executed."""
    return RunSpec(
        learner="backprop",
        label=label,
        params={"lr": lr},
        task="digits",
        task_label="digits",
        task_params={},
        model=MODEL,
        budget={"epochs": epochs, "max_seconds": None, "samples": None, "flops": None},
        schedule={"eval_every": 1, "health_every": 20},
        seed_index=seed,
        study_seed=0,
    )


def fake_run(root: Path, run: RunSpec, accuracy: float = 0.9, **meta: Any) -> str:
    """Store ``run`` in ``root`` as a finished ok run with final accuracy ``accuracy``; returns its id."""
    rid = run.run_id
    rows = [
        {
            "run_id": rid,
            "epoch": run.budget["epochs"],
            "step": 10,
            "split": split,
            "metric": "accuracy",
            "layer": "",
            "value": accuracy,
        }
        for split in ("train", "val", "test")
    ]
    rows.append(
        {
            "run_id": rid,
            "epoch": run.budget["epochs"],
            "step": 10,
            "split": "train",
            "metric": "train_seconds",
            "layer": "",
            "value": 1.0,
        }
    )
    base = {
        "run_id": rid,
        "seed": run.seed,
        "spec": run.to_json(),
        "status": "ok",
        "error": None,
        "summary": {"stopped_by": "epochs", "test_accuracy": accuracy},
        "start_time": "2026-01-01T00:00:00",
        "end_time": "2026-01-01T00:00:01",
    }
    RunStore(root).write(rid, rows, {**base, **meta})
    return rid


def edit_meta(root: Path, run_id: str, change: Any) -> Path:
    """Rewrite ``runs/<run_id>/meta.json`` with ``change(meta)`` applied (a dict edit); returns its path."""
    path = root / "runs" / run_id / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path
