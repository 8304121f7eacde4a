"""Every built-in learner is installed, importable and passes the conformance checks; the
shared model builder behaves."""

from __future__ import annotations

import tomllib

import pytest
import torch
from torch import nn

from bpbench.experiments.front.conformance import check_learner
from bpbench.experiments.plan.registry import LEARNER_GROUP, learner_registry, task_registry
from bpbench.learners.models import ModelSpec, build_model, weight_layers
from conftest import REPO

REGISTRY = learner_registry()
# The built-ins are the entry points pyproject.toml declares (read from the source, not from
# what imports): a learner whose dependency breaks fails below instead of dropping out.
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BUILTIN = PYPROJECT["project"]["entry-points"][LEARNER_GROUP]


@pytest.fixture(scope="module")
def fsdd():
    cls = task_registry().get("fsdd")
    return cls().load(cls.Params())


def test_builtin_learners_are_registered_and_available() -> None:
    assert {"backprop", "fa", "dfa", "ga", "es", "snn_bptt", "snn_dfa"} <= set(BUILTIN)  # the file was read
    for name, target in BUILTIN.items():
        assert target.startswith("bpbench.learners."), (name, target)
        entry = REGISTRY.entries.get(name)
        assert entry is not None, f"{name} is in pyproject.toml but not installed: re-run pip install -e ."
        assert entry.target == target, f"{name}: installed {entry.target}, pyproject.toml says {target}"
        assert entry.available, f"built-in learner {name} does not import: {entry.error}"


# cmaes refuses models above 1,000 parameters by design: it is checked on a linear model
# on digits (650), and on fsdd (260 inputs: 2,610 even when linear) it must refuse clearly.
SMALL_ONLY = {"cmaes": ModelSpec(hidden=())}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_learner_conformance_image(name: str, digits) -> None:
    check_learner(REGISTRY.get(name), digits, model=SMALL_ONLY.get(name))


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_learner_conformance_speech(name: str, fsdd) -> None:
    if name in SMALL_ONLY:
        with pytest.raises(ValueError, match="handles at most"):
            check_learner(REGISTRY.get(name), fsdd, model=SMALL_ONLY[name])
        return
    check_learner(REGISTRY.get(name), fsdd)


def test_model_builder_mlp_options() -> None:
    spec = ModelSpec(hidden=(16, 8), activation="tanh", batchnorm=True, dropout=0.25)
    model = build_model(spec, (1, 8, 8), 10, torch.Generator().manual_seed(0))
    assert [n for n, _ in weight_layers(model)] == ["fc1", "fc2", "out"]
    kinds = [type(m) for m in model]
    assert kinds.count(nn.BatchNorm1d) == 2 and kinds.count(nn.Dropout) == 2 and kinds.count(nn.Tanh) == 2
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_model_builder_cnn_and_seeded_init() -> None:
    spec = ModelSpec(arch="cnn", channels=(4, 8), hidden=(16,))
    a = build_model(spec, (1, 28, 28), 10, torch.Generator().manual_seed(1))
    b = build_model(spec, (1, 28, 28), 10, torch.Generator().manual_seed(1))
    c = build_model(spec, (1, 28, 28), 10, torch.Generator().manual_seed(2))
    assert [n for n, _ in weight_layers(a)] == ["conv1", "conv2", "fc1", "out"]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert a(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="needs image input"):
        build_model(spec, (20, 13), 10, torch.Generator())


def test_unavailable_plugin_is_listed_with_reason(with_plugins) -> None:
    registry = learner_registry()
    entry = registry.entries["needs_missing_dep"]
    assert not entry.available and "bpbench_missing_dependency_xyz" in entry.error
    with pytest.raises(ValueError, match="unavailable"):
        registry.get("needs_missing_dep")
    assert registry.entries["crashing"].available
