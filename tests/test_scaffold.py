"""``bpbench new learner|task NAME``: the package it writes installs, registers, and passes its own tests;
the learner it writes is backprop (same weights, step by step) and stubs every optional hook."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from bpbench.experiments.front.cli import main
from bpbench.experiments.front.scaffold import new_package
from bpbench.experiments.plan.registry import task_registry
from bpbench.learners import base
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import Learner
from bpbench.learners.models import ModelSpec
from helpers import REPO, installed


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A learner and a task package, written by the CLI and installed as the README says
    (``pip install -e DIR``) for this module."""
    root = tmp_path_factory.mktemp("scaffold")
    folders = {"learner": root / "my_rule", "task": root / "blobs"}
    for kind, folder in folders.items():
        assert main(["new", kind, folder.name, "--dir", str(folder)]) == 0
    # as the package's README says: pip install -e "DIR[test]" (offline here: pytest is already installed)
    with (
        installed(Path(f"{folders['learner']}[test]"), "bpbench-my-rule", editable=True),
        installed(Path(f"{folders['task']}[test]"), "bpbench-blobs", editable=True),
    ):
        yield folders


def test_written_files(packages: dict[str, Path]) -> None:
    learner = packages["learner"]
    assert sorted(str(p.relative_to(learner)) for p in learner.rglob("*") if p.is_file()) == [
        "README.md",
        "bpbench_my_rule/__init__.py",
        "bpbench_my_rule/my_rule.py",
        "pyproject.toml",
        "tests/test_my_rule.py",
    ]
    assert 'my_rule = "bpbench_my_rule.my_rule:MyRule"' in (learner / "pyproject.toml").read_text()
    code = (learner / "bpbench_my_rule" / "my_rule.py").read_text()
    assert code.startswith('"""MyRule: a learning rule for bpbench') and "class MyRule(Learner):" in code
    assert 'blobs = "bpbench_blobs.blobs:Blobs"' in (packages["task"] / "pyproject.toml").read_text()


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_packages_pass_their_own_tests(packages: dict[str, Path]) -> None:
    """``pytest DIR`` of each (one pytest process for both: 6 learner tests, 3 task tests); the learner's
    run 1-epoch studies with adam and with sgd + momentum + weight_decay, and refuse bad options."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(packages["learner"]),
            str(packages["task"]),
        ],
        cwd=packages["learner"].parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("9 passed"), proc.stdout


def test_readme_shows_these_commands() -> None:
    section = (REPO / "README.md").read_text().split("## Adding a learner")[1].split("\n## ")[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.splitlines()] == [
        "bpbench new learner my_rule",
        'pip install -e "my_rule[test]"',
        "pytest my_rule",
    ]  # what the fixture runs


def test_refuses_taken_names_bad_names_and_used_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "learner", "backprop", "--dir", str(tmp_path / "a")]) == 2
    assert "learner 'backprop' is already registered (by bpbench" in capsys.readouterr().err
    assert main(["new", "task", "My-Task", "--dir", str(tmp_path / "b")]) == 2
    assert "name = 'My-Task': expected a lowercase Python identifier" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert main(["new", "learner", "fresh", "--dir", str(tmp_path / "c")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def scaffolded_learner(folder: Path, name: str = "twin") -> ModuleType:
    """The learner module ``bpbench new learner NAME`` writes, imported from its file (not installed;
    a name of its own: the ``packages`` fixture may hold my_rule registered)."""
    new_package("learner", name, folder)
    spec = importlib.util.spec_from_file_location(f"scaffolded_{name}", folder / f"bpbench_{name}" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(learner: Learner, data: Any, steps: int) -> dict[str, Any]:
    """Losses, weights, signal, exact layers and scores after ``steps`` training steps."""
    losses = []
    for i in range(steps):
        x, y = data.train.x[32 * i : 32 * (i + 1)], data.train.y[32 * i : 32 * (i + 1)]
        losses.append(learner.train_step(x, y).loss)
    return {
        "losses": losses,
        "state": learner.state_dict(),
        "signal": learner.update_signal(),
        "exact": learner.exact_layers(),
        "scores": learner.predict(data.test.x[:64]),
    }


@pytest.mark.parametrize("options", [{}, {"optimizer": "sgd", "lr": 0.05, "momentum": 0.5, "weight_decay": 1e-3}])
def test_learner_template_is_backprop(tmp_path: Path, options: dict[str, Any]) -> None:
    """The template cannot drift from learners/backprop.py: same options, and the same weights,
    losses, update signal, exact layers and scores after the same steps from the same seed."""
    module = scaffolded_learner(tmp_path / "twin")
    fields = [(f.name, f.type, f.default, dict(f.metadata)) for f in dataclasses.fields(module.TwinParams)]
    assert fields == [(f.name, f.type, f.default, dict(f.metadata)) for f in dataclasses.fields(BackpropParams)]
    task = task_registry().get("digits")
    data = task().load(task.Params())
    spec = ModelSpec(hidden=(16,), batchnorm=True, dropout=0.1)  # dropout: the same masks from the same seed
    runs = []
    for cls, params in (
        (Backprop, BackpropParams(**options, batch_size=32)),
        (module.Twin, module.TwinParams(**options, batch_size=32)),
    ):
        torch.manual_seed(0)
        runs.append(_run(cls(spec, data.info, params, torch.Generator().manual_seed(0), torch.device("cpu")), data, 4))
    ours, theirs = runs
    assert ours["losses"] == theirs["losses"] and ours["exact"] == theirs["exact"]
    torch.testing.assert_close(theirs["state"], ours["state"], rtol=0, atol=0)
    torch.testing.assert_close(theirs["signal"], ours["signal"], rtol=0, atol=0)
    torch.testing.assert_close(theirs["scores"], ours["scores"], rtol=0, atol=0)
    assert ours["losses"][-1] < ours["losses"][0]  # it trained: equal because both learned the same way


def optional_hooks() -> set[str]:
    """Every hook of ``Learner`` a rule may override that has a default (not setup, the five
    required methods, or plumbing such as batch_size), read from the class itself."""
    hooks = {
        name
        for name, value in vars(Learner).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or isinstance(value, classmethod))
        and not getattr(value, "__isabstractmethod__", False)
    }
    return (hooks | {"archs"}) - {"setup"}


def test_template_and_base_docstring_name_every_optional_hook(tmp_path: Path) -> None:
    hooks = optional_hooks()
    assert {
        "check_model",
        "true_gradient",
        "exact_layers",
        "diagnostics",
        "evaluation_metrics",
        "inference_cost",
        "archs",
    } <= hooks  # the class was read
    scaffolded_learner(tmp_path / "twin")
    text = (tmp_path / "twin" / "bpbench_twin" / "twin.py").read_text()
    for hook in sorted(hooks):
        stub = re.search(rf"^    (# )?(def {hook}\(|{hook} = )", text, flags=re.M)
        assert stub, f"the template has no stub of {hook}"
        assert f"``{hook}``" in base.__doc__, f"learners/base.py's docstring does not list {hook}"
    for name in ("NotMeasurable", "make_optimizer", "setup"):
        assert name in text
