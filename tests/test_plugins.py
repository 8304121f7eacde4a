"""An outside plugin package, pip-installed into the test environment, plugs into every command.

``tests/outside_plugin`` (not part of bpbench) registers through real entry points: the learner
``bpbench new learner scaffolded`` writes (added at test time, run with SGD, momentum and weight
decay), a forward-only weight-perturbation rule that calls its model 2k+1 times per step, a
random-features learner with frozen hidden layers, two rules built on the scaffold's learner (one
raises at step 5, one reports a NaN loss), one whose import fails, and a task with a parameter
of its own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import bpbench as api
from bpbench.experiments.front.cli import main
from bpbench.experiments.front.scaffold import new_package
from helpers import bpbench, installed

SOURCE = Path(__file__).resolve().parent / "outside_plugin"
DIST, VERSION = "bpbench-outside-rules", "0.3.1"
PLUGIN_LEARNERS = ("scaffolded", "perturb", "random_features", "raises_at_step", "nan_loss")
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001}

STUDY = {
    "seeds": 1,
    "tasks": {"digits": {}, "noisy_digits": {"noise": [0.0, 8.0]}},
    "model": {"hidden": [32]},
    "budget": {"epochs": 1},
    "targets": {"digits": 0.5},  # time to target on digits, where no backprop runs to set one
    "learners": {
        "scaffolded": {"tasks": ["digits"], **SGD},
        "perturb": {"tasks": ["digits"], "directions": 32, "lr": 0.01, "budget": {"epochs": 3}},
        "random_features": {"tasks": ["digits"], "lr": 0.03, "model": {"hidden": [256]}},
        "raises_at_step": {"tasks": ["digits"]},
        "nan_loss": {"tasks": ["digits"]},
        "backprop": {"tasks": ["noisy_digits"], "lr": 0.01},
    },
}


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The outside package, copied to a temporary folder with the scaffold's learner added as
    ``outside_rules/scaffolded.py``, and pip-installed for this module."""
    root = tmp_path_factory.mktemp("outside")
    source = root / "outside_plugin"
    shutil.copytree(SOURCE, source)
    scaffold = new_package("learner", "scaffolded", root / "scaffold")
    shutil.copy(scaffold / "bpbench_scaffolded" / "scaffolded.py", source / "outside_rules" / "scaffolded.py")
    with installed(source, DIST):
        yield source


@pytest.fixture(scope="module")
def results(outside: Path, tmp_path_factory: pytest.TempPathFactory) -> api.Results:
    return api.run(STUDY, out=tmp_path_factory.mktemp("study") / "out", executor="inline", progress=False)


def test_list_shows_each_entry_with_its_distribution(outside: Path) -> None:
    out = bpbench("list", check=True).stdout  # a fresh process finds the installed package
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for name in (*PLUGIN_LEARNERS, "noisy_digits"):
        assert f"{DIST} {VERSION}" in lines[name] and lines[name].endswith("available"), lines[name]
    assert f"{DIST} {VERSION}" in lines["missing_dep"]
    assert (
        "unavailable: ModuleNotFoundError: No module named 'outside_rules_dependency_that_is_not_installed'"
        in lines["missing_dep"]
    )
    assert " bpbench " in lines["backprop"] and " bpbench " in lines["digits"]


def test_check_conforming_diverging_and_unavailable(outside: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # raises_at_step conforms: its 1-epoch check run on 256 samples ends before step 5
    for args in (
        ["scaffolded"],
        ["perturb"],
        ["random_features"],
        ["raises_at_step"],
        ["backprop", "--task", "noisy_digits"],
    ):
        assert main(["check", *args]) == 0, capsys.readouterr()
        assert "conforms" in capsys.readouterr().out
    assert main(["check", "nan_loss"]) == 1
    assert "NonFiniteLoss: training loss is nan at epoch 1, step 3" in capsys.readouterr().err
    assert main(["check", "missing_dep"]) == 2
    assert "learner 'missing_dep' is unavailable: ModuleNotFoundError" in capsys.readouterr().err


def test_study_well_behaved_rules_learn_broken_ones_fail_alone(results: api.Results) -> None:
    summary = results.summary.set_index(["label", "configuration"])
    for label in ("scaffolded", "perturb", "random_features"):
        run = summary.loc[(label, "")]
        assert run["status"] == "ok", run["error"]
        assert run["test_accuracy"] > 0.6, (label, run["test_accuracy"])  # chance is 0.1
        assert run["train_flops"] > 0 and run["peak_memory_bytes"] > 0
    assert summary.loc[("raises_at_step", ""), "error"] == "RuntimeError: outside rule failed on purpose at step 5"
    assert summary.loc[("nan_loss", ""), "error"].startswith("NonFiniteLoss: training loss is nan at epoch 1, step 3")
    assert (summary.loc[[("raises_at_step", ""), ("nan_loss", "")], "status"] == "failed").all()
    table = results.table()
    for label in ("raises_at_step", "nan_loss"):
        assert next(line for line in table.splitlines() if line.startswith(label)).count("(1 failed)") == 1


def test_the_scaffolds_learner_takes_the_standard_optimizer_options(results: api.Results) -> None:
    metas = [json.loads(p.read_text()) for p in results.out.glob("runs/*/meta.json")]
    params = next(m["spec"]["params"] for m in metas if m["spec"]["label"] == "scaffolded")
    assert {key: params[key] for key in SGD} == SGD
    with pytest.raises(api.ConfigError, match=r"^learners.scaffolded: momentum = 1.0: allowed is 0 <= momentum < 1$"):
        api.run(
            {"tasks": ["digits"], "learners": {"scaffolded": {"momentum": 1.0}}},
            out=results.out.parent / "bad",
            progress=False,
        )
    assert not (results.out.parent / "bad").exists()


def test_scores_of_a_study_with_plugin_learners(results: api.Results) -> None:
    """Time to target, profiles and ranks take plugin learners as they are (no change to the plugin)."""
    summary = results.summary.set_index(["label", "configuration"])
    for label in ("perturb", "random_features"):
        assert summary.loc[(label, ""), "target"] == 0.5 and summary.loc[(label, ""), "reached"], label
        assert summary.loc[(label, ""), "ttt_epochs"] >= 1 and summary.loc[(label, ""), "ttt_flops"] > 0
    assert summary.loc[("raises_at_step", ""), "reached"] is not True  # failed: no time to target
    table = results.table(columns=["label", "task_label", "ttt_epochs", "reached"])
    assert next(line for line in table.splitlines() if line.startswith("perturb")).split()[-1] == "1/1"
    scores = results.score(format="csv")
    rows = {line.split(",")[0]: line for line in scores.splitlines()[1:]}
    assert {"perturb", "random_features", "backprop"} <= set(rows)
    assert "Friedman" not in scores  # csv holds the numbers only


def test_the_task_parameter_reaches_the_task(results: api.Results) -> None:
    summary = results.summary.set_index(["label", "configuration"])
    clean, noisy = summary.loc[("backprop", "noise=0.0")], summary.loc[("backprop", "noise=8.0")]
    assert clean["status"] == noisy["status"] == "ok"
    assert clean["test_accuracy"] > noisy["test_accuracy"] + 0.1, (clean["test_accuracy"], noisy["test_accuracy"])


def test_meta_names_the_providing_distributions(results: api.Results) -> None:
    metas = {
        m["spec"]["label"] + m["spec"]["task_label"]: m
        for m in (json.loads(p.read_text()) for p in results.out.glob("runs/*/meta.json"))
    }
    perturb, backprop = metas["perturbdigits"]["providers"], metas["backpropnoisy_digits"]["providers"]
    assert (perturb["learner"]["distribution"], perturb["learner"]["version"]) == (DIST, VERSION)
    assert perturb["task"]["distribution"] == "bpbench" == backprop["learner"]["distribution"]
    assert (backprop["task"]["distribution"], backprop["task"]["target"]) == (
        DIST,
        "outside_rules.noisy_digits:NoisyDigits",
    )


def test_unavailable_learner_or_bad_task_option_stops_before_any_run(outside: Path, tmp_path: Path) -> None:
    with pytest.raises(api.ConfigError, match="learner 'missing_dep' is unavailable: ModuleNotFoundError"):
        api.run({"tasks": ["digits"], "learners": {"missing_dep": {}}}, out=tmp_path / "a", progress=False)
    with pytest.raises(api.ConfigError, match=r"tasks.noisy_digits: noise = -1.0: must be >= 0"):
        api.run(
            {"tasks": {"noisy_digits": {"noise": -1.0}}, "learners": {"backprop": {}}},
            out=tmp_path / "b",
            progress=False,
        )
    assert not any(tmp_path.iterdir())
