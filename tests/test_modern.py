"""The newer rules (pc, ff, dtp, fwd_grad) as built-ins: registered, ordered and colored,
deterministic, bad settings refused by the CLI before any run, and the built-in `modern` study
end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.registry import learner_registry
from bpbench.experiments.report.figures import learner_colors
from bpbench.experiments.report.learner_styles import ORDER as LEARNER_ORDER
from bpbench.experiments.report.learner_styles import STYLES
from bpbench.learners.models import ModelSpec
from conftest import bpbench

RULES = ("pc", "ff", "dtp", "fwd_grad")


@pytest.mark.parametrize("name", RULES)
def test_registered_ordered_colored(name: str) -> None:
    registry = learner_registry()
    assert registry.entries[name].available and registry.get(name).__module__ == f"bpbench.learners.{name}"
    assert name in LEARNER_ORDER and name in STYLES
    colors = learner_colors([(n, n) for n in LEARNER_ORDER] + [("mine", "backprop"), ("other", "backprop")])
    assert len(set(colors.values())) == len(colors)  # fixed colors and spares never collide


@pytest.mark.parametrize("name", RULES)
def test_same_seed_same_run(name: str, digits) -> None:
    cls = learner_registry().get(name)
    x, y = digits.train.x[:64], digits.train.y[:64]

    def trained(seed: int) -> torch.Tensor:
        learner = cls(
            ModelSpec(hidden=(32, 32)),
            digits.info,
            cls.Params(),
            torch.Generator().manual_seed(seed),
            torch.device("cpu"),
        )
        for _ in range(3):
            learner.train_step(x, y)
        return learner.predict(x)

    assert torch.equal(trained(3), trained(3))
    assert not torch.equal(trained(3), trained(4))


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("learners.pc.gamma=0", "gamma = 0"),
        ("learners.ff.threshold=-1", "threshold = -1"),
        ("learners.dtp.penultimate='sideways'", "penultimate = 'sideways'"),
        ("learners.fwd_grad_weight.tangents=0", "tangents = 0"),
    ],
)
def test_cli_refuses_bad_params_before_any_run(tmp_path: Path, setting: str, needle: str) -> None:
    proc = bpbench("run", "modern", "--out", str(tmp_path / "out"), "--set", setting, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_modern_study_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "modern"
    args = [
        "run",
        "modern",
        "--out",
        str(out),
        "--executor",
        "inline",
        "--set",
        "seeds=1",
        "--set",
        "budget.epochs=3",
        "--set",
        "tasks=['digits']",
    ]
    assert main(args) == 0
    metas = [json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")]
    by_row = {(m["spec"]["label"], m["spec"]["params"].get("penultimate", "")): m for m in metas}
    assert set(by_row) == {
        ("backprop", ""),
        ("pc", ""),
        ("backprop_mse", ""),
        ("pc_mse", ""),
        ("ff", ""),
        ("backprop_tanh", ""),
        ("dtp", "gradient"),
        ("dtp", "target"),
        ("fwd_grad_weight", ""),
        ("fwd_grad_activity", ""),
    }
    floors = {"fwd_grad_weight": 0.15, "fwd_grad_activity": 0.5}  # 3 epochs of slow learners; chance is 0.1
    for (label, _), meta in by_row.items():
        assert meta["status"] == "ok", (label, meta["error"])
        assert meta["measures"]["values"]["test_accuracy"] > floors.get(label, 0.6), (label, meta["summary"])
    by_label = {label: meta for (label, _), meta in by_row.items()}
    metrics = pd.concat(pd.read_parquet(p) for p in out.glob("runs/*/metrics.parquet"))
    pc_run, ff_run = by_label["pc"]["run_id"], by_label["ff"]["run_id"]
    pc_rows = metrics[metrics.run_id == pc_run]
    assert {"pc_energy_first", "pc_energy_last", "grad_alignment"} <= set(pc_rows.metric)
    energy = pc_rows.pivot_table(index="step", columns="metric", values="value")[
        ["pc_energy_first", "pc_energy_last"]
    ].dropna()
    assert len(energy) >= 3  # every sampled step
    assert (energy["pc_energy_last"] < energy["pc_energy_first"]).all()
    # pc_mse is compared with the squared-error gradient it follows (cosine ~.997 at 256-256; against
    # cross-entropy's gradient it was .44-.73 per layer)
    mse_rows = metrics[(metrics.run_id == by_label["pc_mse"]["run_id"]) & (metrics.metric == "grad_alignment")]
    assert mse_rows.groupby("layer")["value"].mean().min() > 0.95, mse_rows.groupby("layer")["value"].mean()
    ff_rows = metrics[metrics.run_id == ff_run]
    assert {"ff_goodness_pos", "ff_goodness_neg"} <= set(ff_rows.metric)
    assert "grad_alignment" not in set(ff_rows.metric)  # n/a, with the reason in meta.json
    assert "no backprop gradient" in json.dumps(by_label["ff"].get("unmeasured", {}))
    assert (
        by_label["backprop_tanh"]["spec"]["model"]["activation"]
        == "tanh"
        == by_label["dtp"]["spec"]["model"]["activation"]
    )
    for penultimate, exact, inverted in [("gradient", ["fc2", "out"], {"fc2"}), ("target", ["out"], {"fc2", "out"})]:
        meta = by_row[("dtp", penultimate)]
        assert meta["summary"]["exact_layers"] == exact, penultimate
        rows = metrics[metrics.run_id == meta["run_id"]]
        assert set(rows[rows.metric == "inverse_reconstruction_error"].layer) == inverted
        assert (rows.metric == "grad_alignment_mean").any()  # the non-exact layers' cosine
    for label in ("fwd_grad_weight", "fwd_grad_activity"):
        assert by_label[label]["summary"]["exact_layers"] == []
        rows = metrics[metrics.run_id == by_label[label]["run_id"]]
        assert set(rows[rows.metric == "grad_alignment"].layer) == {"fc1", "fc2", "out"}
        assert (rows.metric == "grad_alignment_mean").any()
    capsys.readouterr()
    assert main(["table", str(out)]) == 0
    table = capsys.readouterr().out
    assert all(
        f"\n{label} " in table for label in ("pc", "ff", "backprop_tanh", "dtp", "fwd_grad_weight", "fwd_grad_activity")
    )
