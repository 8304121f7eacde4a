"""Study files: grid expansion, run ids, seeds, and validation errors before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import apply_sets, expand, load_study
from helpers import bpbench

L, T = learner_registry(), task_registry()

BASE = {
    "seeds": 2,
    "tasks": ["digits", "fsdd"],
    "model": {"hidden": [32]},
    "budget": {"epochs": 1},
    "learners": {"backprop": {"lr": [0.001, 0.01]}},
}


def test_grid_expands_learners_tasks_params_seeds() -> None:
    study = expand("s", BASE, L, T)
    assert len(study.runs) == 2 * 2 * 2
    assert {r.params["lr"] for r in study.runs} == {0.001, 0.01}
    assert all(r.varied == ("params.lr",) for r in study.runs)
    assert len({r.run_id for r in study.runs}) == len(study.runs)


def test_list_of_lists_is_a_grid_for_list_fields() -> None:
    raw = {
        **BASE,
        "model": {"hidden": [[32], [32, 32]], "activation": ["relu", "sigmoid"]},
        "seeds": 1,
        "learners": {"backprop": {}},
    }
    runs = expand("s", raw, L, T).runs
    assert sorted({tuple(r.model["hidden"]) for r in runs}) == [(32,), (32, 32)]
    assert len(runs) == 2 * 2 * 2 and set(runs[0].varied) == {"model.hidden", "model.activation"}


def test_run_id_is_stable_and_seed_is_shared_across_learners() -> None:
    a = expand("s", BASE, L, T).runs
    b = expand("other-name", BASE, L, T).runs
    assert [r.run_id for r in a] == [r.run_id for r in b]
    same_task_seed = [r for r in a if r.task == "digits" and r.seed_index == 0]
    assert len({r.seed for r in same_task_seed}) == 1  # paired comparison across the lr grid
    assert len({r.seed for r in a}) == 4  # 2 tasks x 2 seeds


def test_sets_override_nested_values() -> None:
    raw = apply_sets(
        BASE, ["budget.epochs=3", "learners.backprop.optimizer=sgd", "tasks.fsdd.frames=30", "seeds=[0, 5]"]
    )
    runs = expand("s", raw, L, T).runs
    assert {r.budget["epochs"] for r in runs} == {3}
    assert {r.params["optimizer"] for r in runs} == {"sgd"}
    assert {r.task_params.get("frames") for r in runs if r.task == "fsdd"} == {30}
    assert {r.seed_index for r in runs} == {0, 5}


@pytest.mark.parametrize(
    "sets, message",
    [
        (["learners.backprp.lr=0.1"], "unknown learner 'backprp'; allowed: .*backprop"),
        (["tasks=['digitz']"], "unknown task 'digitz'; allowed: .*digits"),
        (["learners.backprop.lr='fast'"], r"learners.backprop.lr = 'fast': expected float"),
        (["learners.backprop.lr=-1"], "lr = -1.0: must be > 0"),
        (
            ["learners.backprop.optimiser=sgd"],
            "unknown key 'optimiser' in learners.backprop; allowed: batch_size, loss, lr",
        ),
        (["budget.epochs=-2"], "epochs = -2: must be a positive integer"),
        (["budget.epoch=2"], "unknown key 'epoch' in learners.backprop.budget; allowed: "),
        (["seeds=0"], "seeds = 0"),
        (["model.activation=swish"], "'relu' | 'tanh' | 'sigmoid'"),
        (["model.arch=cnn"], "arch = 'cnn' on task 'fsdd'"),
        (["colour=1"], "unknown key 'colour' in study s"),
        (["reference=backprp"], "reference = 'backprp': not a learner label of this study; allowed: backprop"),
        (["reference=1"], "reference = 1: not a learner label"),
    ],
)
def test_validation_errors_name_value_and_allowed(sets: list[str], message: str) -> None:
    raw = dict(BASE)
    if sets[0].startswith("learners.backprp"):
        raw = {**BASE, "learners": {"backprp": {}}}
        sets = []
    with pytest.raises(ConfigError, match=message):
        expand("s", apply_sets(raw, sets), L, T)


def test_unknown_study_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown study 'quik'; built-in studies: .*quick"):
        load_study("quik", [], L, T)


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_cli_bad_input_is_one_line_exit_2_and_runs_nothing(tmp_path: Path) -> None:
    for args, needle in [
        (["run", "quick", "--set", "budget.epochs=-1"], "epochs = -1"),
        (["run", "quik"], "unknown study 'quik'"),
        (["run", "quick", "--set", "learners.backprop.lr=true"], "expected float"),
        (["run", "quick", "--set", "tasks=['mnist_full']"], "unknown task 'mnist_full'"),
        (["run", "quick", "--device", "tpu"], "device = 'tpu': allowed: auto, cpu, cuda, cuda:N"),
    ]:
        proc = bpbench(*args, "--out", str(tmp_path / "out"), timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert not (tmp_path / "out").exists()
