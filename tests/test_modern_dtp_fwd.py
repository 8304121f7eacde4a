"""dtp and fwd_grad as built-ins: registered, ordered and colored, and their rows of the built-in
`modern` study (with backprop and the tanh partner) end to end on a tiny budget."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bpbench.experiments.cli import main
from bpbench.experiments.plots import MARKERS, learner_colors
from bpbench.experiments.registry import learner_registry
from bpbench.experiments.study import builtin_studies
from bpbench.experiments.table import LEARNER_ORDER

RULES = ("dtp", "fwd_grad")
BLOCK = "# ---- target propagation and forward gradients"  # where modern.toml's rows for these rules start


@pytest.mark.parametrize("name", RULES)
def test_registered_ordered_colored(name: str) -> None:
    registry = learner_registry()
    assert registry.entries[name].available and registry.get(name).__module__ == f"bpbench.learners.{name}"
    assert name in LEARNER_ORDER and name in MARKERS
    colors = learner_colors([(n, n) for n in LEARNER_ORDER] + [("mine", "backprop"), ("other", "backprop")])
    assert len(set(colors.values())) == len(colors)  # fixed colors and spares never collide


def test_modern_rows_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """backprop and this block's rows of `modern` (the study's own text), 1 seed, 3 epochs, digits."""
    text = builtin_studies()["modern"].read_text()
    start = text.index("[learners.backprop]\n")
    backprop = text[start:text.index("\n\n", start) + 2]
    (tmp_path / "modern_dtp_fwd.toml").write_text(text[:text.index("[learners.")] + backprop + text[text.index(BLOCK):])
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "modern_dtp_fwd.toml"), "--out", str(out), "--executor", "inline",
                 "--set", "seeds=1", "--set", "budget.epochs=3", "--set", "tasks=['digits']"]) == 0
    metas = [json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")]
    by_row = {(m["spec"]["label"], m["spec"]["params"].get("penultimate", "")): m for m in metas}
    assert set(by_row) == {("backprop", ""), ("backprop_tanh", ""), ("dtp", "gradient"), ("dtp", "target"),
                           ("fwd_grad_weight", ""), ("fwd_grad_activity", "")}
    floors = {"fwd_grad_weight": 0.15, "fwd_grad_activity": 0.5}  # 3 epochs; chance is 0.1
    for (label, _), meta in by_row.items():
        assert meta["status"] == "ok", (label, meta["error"])
        assert meta["summary"]["test_accuracy"] > floors.get(label, 0.8), (label, meta["summary"])
    assert by_row[("backprop_tanh", "")]["spec"]["model"]["activation"] == "tanh"
    assert by_row[("dtp", "target")]["spec"]["model"]["activation"] == "tanh"
    metrics = pd.concat(pd.read_parquet(p) for p in out.glob("runs/*/metrics.parquet"))
    for penultimate in ("gradient", "target"):
        rows = metrics[metrics.run_id == by_row[("dtp", penultimate)]["run_id"]]
        errors = rows[rows.metric == "inverse_reconstruction_error"]
        assert set(errors.layer) == ({"fc2"} if penultimate == "gradient" else {"fc2", "out"})
    for label in ("fwd_grad_weight", "fwd_grad_activity"):
        rows = metrics[metrics.run_id == by_row[(label, "")]["run_id"]]
        assert set(rows[rows.metric == "grad_alignment"].layer) == {"fc1", "fc2", "out"}
        assert rows[rows.metric == "train_flops"].value.max() > 0
    for row, exact in [(("dtp", "gradient"), ["fc2", "out"]), (("dtp", "target"), ["out"]),
                       (("fwd_grad_weight", ""), []), (("fwd_grad_activity", ""), [])]:
        assert by_row[row]["summary"]["exact_layers"] == exact, row
        rows = metrics[metrics.run_id == by_row[row]["run_id"]]
        assert (rows.metric == "grad_alignment_mean").any(), row  # the alignment summary is measured
    capsys.readouterr()
    assert main(["table", str(out)]) == 0
    table = capsys.readouterr().out
    assert all(f"\n{label} " in table for label in ("backprop_tanh", "dtp", "fwd_grad_weight", "fwd_grad_activity"))
