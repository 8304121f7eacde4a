"""arch = "lenet": LeNet-5's exact layers, every conv-capable learner training it, and the
learners that cannot refused before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bpbench.experiments.front.conformance import check_learner
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import expand
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import TaskInfo
from bpbench.learners.es import ESParams
from bpbench.learners.fa import FeedbackAlignment
from bpbench.learners.feedback import FeedbackParams
from bpbench.learners.fwd_grad import ForwardGradientParams
from bpbench.learners.ga import GAParams
from bpbench.learners.models import ModelSpec, build_model, weight_layers
from bpbench.learners.spiking import SpikingParams
from helpers import bpbench

LENET = ModelSpec(arch="lenet")
REGISTRY = learner_registry()
# Built-in learners that train LeNet, with small settings for the slow ones (a population
# forward of LeNet costs population x batch LeNet forwards).
TRAINS = {
    "backprop": None,
    "fa": None,
    "dfa": None,
    "sign_symmetry": None,
    "brsf": None,
    "frsf": None,
    "snn_bptt": SpikingParams(num_steps=3, batch_size=16),
    "snn_dfa": None,
    "ga": GAParams(population=4, truncation=2, batch_size=16),
    "es": ESParams(population=4, batch_size=16),
    "fwd_grad": ForwardGradientParams(perturb="weight", batch_size=16),  # weight perturbation needs no MLP
}
BUILTIN = sorted(n for n in REGISTRY.names() if REGISTRY.entries[n].target.startswith("bpbench."))
REFUSES = sorted(set(BUILTIN) - set(TRAINS))  # cmaes, and the MLP-only rules


@pytest.fixture(scope="module")
def mnist5k():
    cls = task_registry().get("mnist5k")
    return cls().load(cls.Params())


def test_lenet_has_lenet5_layers_for_28x28_input() -> None:
    model = build_model(LENET, (1, 28, 28), 10, torch.Generator().manual_seed(0))
    assert [(n, tuple(m.weight.shape)) for n, m in weight_layers(model)] == [
        ("conv1", (6, 1, 5, 5)),
        ("conv2", (16, 6, 5, 5)),
        ("conv3", (120, 16, 5, 5)),
        ("fc1", (84, 120)),
        ("out", (10, 84)),
    ]
    assert model.conv1.padding == (2, 2) and model.conv2.padding == (0, 0) and model.conv3.padding == (0, 0)
    assert sum(p.numel() for p in model.parameters()) == 156 + 2416 + 48120 + 10164 + 850
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert shapes == {
        "conv1": (6, 28, 28),
        "act_conv1": (6, 28, 28),
        "pool1": (6, 14, 14),
        "conv2": (16, 10, 10),
        "act_conv2": (16, 10, 10),
        "pool2": (16, 5, 5),
        "conv3": (120, 1, 1),
        "act_conv3": (120, 1, 1),
        "flatten": (120,),
        "fc1": (84,),
        "act_fc1": (84,),
        "out": (10,),
    }
    assert all(isinstance(model.get_submodule(a), nn.ReLU) for a in ("act_conv1", "act_conv2", "act_conv3", "act_fc1"))


def test_lenet_options_and_bad_input() -> None:
    spec = ModelSpec(arch="lenet", activation="tanh", batchnorm=True, dropout=0.1)
    model = build_model(spec, (1, 28, 28), 10, torch.Generator().manual_seed(0))
    kinds = [type(m) for m in model]
    assert kinds.count(nn.BatchNorm2d) == 3 and kinds.count(nn.BatchNorm1d) == 1
    assert kinds.count(nn.Tanh) == 4 and kinds.count(nn.Dropout) == 4
    with pytest.raises(ValueError, match=r"model.hidden = \[84\] with arch = 'lenet'"):
        ModelSpec(arch="lenet", hidden=(84,))
    with pytest.raises(ValueError, match="LeNet-5 needs images of at least 28x28; got input shape \\(1, 8, 8\\)"):
        build_model(LENET, (1, 8, 8), 10, torch.Generator())
    with pytest.raises(ValueError, match="needs image input"):
        build_model(LENET, (20, 13), 10, torch.Generator())


@pytest.mark.parametrize("name", sorted(TRAINS))
def test_conv_capable_learner_trains_lenet(name: str, mnist5k) -> None:
    cls = REGISTRY.get(name)
    cls.check_model(LENET)
    check_learner(cls, mnist5k, params=TRAINS[name], model=LENET, steps=2)


def test_fa_with_feedback_equal_to_weights_is_backprop_on_lenet(mnist5k) -> None:
    x, y = mnist5k.train.x[:16], mnist5k.train.y[:16]
    bp = Backprop(LENET, mnist5k.info, BackpropParams(), torch.Generator().manual_seed(0), torch.device("cpu"))
    fa = FeedbackAlignment(LENET, mnist5k.info, FeedbackParams(), torch.Generator().manual_seed(0), torch.device("cpu"))
    layers = dict(weight_layers(fa.model))
    for name, b in fa.feedback.items():
        b.copy_(layers[name].weight)  # B := W: the padded conv route must then be backprop's
    bp.train_step(x, y)
    fa.train_step(x, y)
    expected, got = bp.update_signal(), fa.update_signal()
    assert list(got) == ["conv1", "conv2", "conv3", "fc1", "out"]
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)


LENET_STUDY = {"tasks": ["mnist5k"], "model": {"arch": "lenet"}}


@pytest.mark.parametrize("name", REFUSES)
def test_learner_that_cannot_train_lenet_is_refused_at_validation(name: str) -> None:
    """Every built-in learner outside TRAINS must refuse LeNet before any run starts."""
    assert "cmaes" in REFUSES and set(TRAINS) <= set(BUILTIN)
    with pytest.raises(ValueError, match="arch = 'lenet'"):
        REGISTRY.get(name).check_model(LENET)
    with pytest.raises(ConfigError, match=f"learners.{name}: model.arch = 'lenet'"):
        expand("t", {**LENET_STUDY, "learners": {name: {}}}, REGISTRY, task_registry())


def test_cmaes_says_why() -> None:
    with pytest.raises(ValueError, match="at most 1000 parameters and LeNet-5 has over 50,000"):
        REGISTRY.get("cmaes").check_model(LENET)


def test_declared_archs_refuse_others_before_any_run() -> None:
    class MlpOnly(Backprop):
        archs = frozenset({"mlp"})

    registry = learner_registry({"mlp_only": MlpOnly})
    with pytest.raises(
        ConfigError, match=r"learners\.mlp_only: model\.arch = 'lenet': MlpOnly trains only arch = 'mlp'"
    ):
        expand("t", {**LENET_STUDY, "learners": {"mlp_only": {}}}, registry, task_registry())
    info = TaskInfo("mnist5k", "image", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="trains only"):  # and when built directly
        MlpOnly(LENET, info, BackpropParams(), torch.Generator(), torch.device("cpu"))
    assert len(expand("t", {"tasks": ["mnist5k"], "learners": {"mlp_only": {}}}, registry, task_registry()).runs) == 1


def test_lenet_on_speech_is_refused() -> None:
    with pytest.raises(ConfigError, match="arch = 'lenet' on task 'fsdd' \\(speech\\): allowed only on image tasks"):
        expand(
            "t",
            {"tasks": ["fsdd"], "model": {"arch": "lenet"}, "learners": {"backprop": {}}},
            REGISTRY,
            task_registry(),
        )


def test_cli_refuses_cmaes_on_lenet_with_exit_2_and_runs_nothing(tmp_path: Path) -> None:
    study = tmp_path / "s.toml"
    study.write_text('tasks = ["mnist5k"]\n[model]\narch = "lenet"\n[learners.backprop]\n[learners.cmaes]\n')
    proc = bpbench("run", str(study), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "learners.cmaes: model.arch = 'lenet'" in proc.stderr
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(
    "name, model, message",
    [
        ("ga", {"batchnorm": True}, "ga: model.batchnorm = true is not supported by population learners"),
        ("es", {"dropout": 0.2}, "es: model.dropout = 0.2 is not supported"),
        ("snn_dfa", {"batchnorm": True}, "snn_dfa's local rule has no batch-norm update"),
    ],
)
def test_learner_model_checks_run_at_study_validation(name: str, model: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"learners.{name}: .*{message}"):
        expand("t", {"tasks": ["digits"], "model": model, "learners": {name: {}}}, REGISTRY, task_registry())


def test_a_refusal_that_depends_on_an_option_comes_before_any_run() -> None:
    """fwd_grad trains LeNet by weight perturbation but not by activity perturbation: the
    study is refused at validation for the activity variant only."""
    study = {**LENET_STUDY, "learners": {"fwd_grad": {"perturb": "activity"}}}
    with pytest.raises(
        ConfigError, match=r"learners\.fwd_grad: fwd_grad: perturb = 'activity' with model\.arch = 'lenet'"
    ):
        expand("t", study, REGISTRY, task_registry())
    assert expand("t", {**LENET_STUDY, "learners": {"fwd_grad": {"perturb": "weight"}}}, REGISTRY, task_registry()).runs
