"""The `bartunov` study (Bartunov et al. 2018, MNIST fully connected) on fixture IDX files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.report.summary import per_run
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from test_idx import fixture_set

TINY = ["seeds=1", "budget.epochs=4", "model.hidden=[32]"]


def test_bartunov_needs_the_mnist_folder_before_any_run() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.mnist: task mnist: path = '' is not a folder"):
        load_study("bartunov", [], learner_registry(), task_registry())


def test_bartunov_study_runs_on_fixture_idx_files(tmp_path: Path) -> None:
    fixture_set(tmp_path / "mnist", 500, 100, compress=True)
    study = load_study("bartunov", [f"tasks.mnist.path={tmp_path / 'mnist'}"], learner_registry(), task_registry())
    assert {r.label for r in study.runs} >= {"backprop", "fa", "dfa"} and len({r.seed_index for r in study.runs}) == 3
    assert {(r.model["arch"], r.model["activation"], tuple(r.model["hidden"])) for r in study.runs} == {
        ("mlp", "tanh", (256,) * 7)
    }
    sets = [arg for s in [f"tasks.mnist.path={tmp_path / 'mnist'}", *TINY] for arg in ("--set", s)]
    assert main(["run", "bartunov", "--out", str(tmp_path / "out"), "--executor", "inline", *sets]) == 0
    runs = per_run(RunTable.read(RunStore(tmp_path / "out")).tidy()).set_index("learner")
    assert set(runs.index) >= {"backprop", "fa", "dfa"} and (runs["task"] == "mnist").all()
    assert runs.loc["backprop", "test_acc"] > 0.5  # the fixture classes light different blocks; chance is 0.1
