"""The first/last update-norm ratio is n/a where it describes the estimator, not the gradient."""

from __future__ import annotations

import json
from pathlib import Path

import bpbench

STUDY = {
    "seeds": 1,
    "tasks": ["digits"],
    "model": {"hidden": [32, 16]},
    "budget": {"epochs": 1},
    "schedule": {"health_every": 5},
    "learners": {
        "fwd_weight": {"learner": "fwd_grad", "perturb": "weight", "lr": 1e-3},
        "fwd_activity": {"learner": "fwd_grad", "perturb": "activity", "lr": 1e-3},
    },
}


def test_weight_perturbation_ratio_is_na_with_its_reason_activity_is_measured(tmp_path: Path) -> None:
    results = bpbench.run(STUDY, out=tmp_path / "out", executor="inline", progress=False)
    metas = {m["spec"]["label"]: m for m in (json.loads(p.read_text()) for p in results.out.glob("runs/*/meta.json"))}
    assert "parameter count" in metas["fwd_weight"]["unmeasured"]["grad_norm_ratio"]
    assert "grad_norm_ratio" not in metas["fwd_activity"]["unmeasured"]
    ratios = results.metrics.query("metric == 'grad_norm_ratio'").groupby("label")["value"].size()
    assert "fwd_weight" not in ratios and ratios["fwd_activity"] > 0
