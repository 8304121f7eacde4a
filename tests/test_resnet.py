"""The CIFAR ResNet of the shared model builder (He et al. 2016, option-A shortcuts), and feedback
routed through its nested convolutions: fa with B = W is backprop exactly (every layer, shortcuts
included); dfa sends e @ B to a block's inner conv; rules that cannot route feedback refuse it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import expand
from bpbench.learners.base import TaskInfo
from bpbench.learners.models import ModelSpec, build_model, weight_layers

CPU = torch.device("cpu")
INFO = TaskInfo("toy", "image", (3, 16, 16), 10)


def make(rule: str, depth: int = 8, seed: int = 0):
    cls = learner_registry().get(rule)
    return cls(ModelSpec(arch="resnet", depth=depth), INFO, cls.Params(), torch.Generator().manual_seed(seed), CPU)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g)


@pytest.mark.parametrize(("depth", "params"), [(8, 75290), (14, 172506), (20, 269722)])
def test_resnet_has_6n_plus_2_weight_layers_and_he_et_als_size(depth: int, params: int) -> None:
    model = build_model(ModelSpec(arch="resnet", depth=depth), (3, 32, 32), 10, torch.Generator().manual_seed(0))
    layers = weight_layers(model)
    assert len(layers) == depth  # 1 stem conv + 6n block convs + the output layer
    assert layers[0][0] == "conv1" and layers[-1][0] == "out" and layers[1][0] == "stage1.0.conv1"
    assert (
        sum(p.numel() for p in model.parameters()) == params
    )  # as BioTorch's small_resnet (ResNet-20: 0.27M, He et al.)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 10}, r"model.depth = 10: allowed is 6n \+ 2"),
        ({"depth": 20, "hidden": (64,)}, "model.hidden"),
        ({"depth": 20, "batchnorm": True}, "model.batchnorm"),
    ],
)
def test_resnet_options_are_refused_in_one_line(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelSpec(arch="resnet", **options)
    with pytest.raises(ValueError, match="depth applies to arch = 'resnet' only"):
        ModelSpec(arch="mlp", depth=14)


def test_fa_with_the_weights_as_feedback_is_backprop_through_every_residual_layer() -> None:
    learner = make("fa")
    x, y = batch()
    for _ in range(2):  # batch-norm statistics and weights move first
        learner.train_step(*batch(1))
    layers = dict(weight_layers(learner.model))
    for name, b in learner.feedback.items():  # B = W: the route must be exactly Wᵀ's
        b.copy_(layers[name].weight.detach())
    learner.model.train()
    truth = learner.true_gradient(x, y)
    learner.train_step(x, y)
    signal = learner.update_signal()
    assert set(signal) == set(truth) == set(layers)
    for name in layers:
        assert torch.allclose(signal[name], truth[name], rtol=1e-4, atol=1e-6), name


def test_fa_on_a_resnet_is_not_backprop_below_the_output() -> None:
    learner = make("fa")
    x, y = batch()
    truth = learner.true_gradient(x, y)
    learner.train_step(x, y)
    signal = learner.update_signal()
    assert torch.allclose(signal["out"], truth["out"], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(signal["stage1.0.conv1"], truth["stage1.0.conv1"], rtol=1e-2, atol=1e-6)


def test_dfa_projects_the_output_error_to_a_blocks_inner_conv() -> None:
    learner = make("dfa")
    x, y = batch()
    seen: dict[str, torch.Tensor] = {}
    name = "stage2.0.conv2"  # its input (the block's first activation) feeds nothing else
    layer = learner.model.get_submodule(name)
    with torch.no_grad():  # the output error of the step's forward (train mode, same weights, statistics kept)
        buffers = {k: v.clone() for k, v in learner.model.named_buffers()}
        logits = torch.func.functional_call(
            learner.model.train(), {**dict(learner.model.named_parameters()), **buffers}, (x,)
        )
    error = (logits.softmax(1) - F.one_hot(y, 10).float()) / len(y)

    def keep_input_grad(_, args, out) -> None:
        args[0].register_hook(lambda g: seen.setdefault("g", g))

    hook = layer.register_forward_hook(keep_input_grad)
    learner.train_step(x, y)
    hook.remove()
    expected = (error @ learner.feedback[name]).view(seen["g"].shape)
    assert torch.allclose(seen["g"], expected, rtol=1e-4, atol=1e-8)
    assert set(learner.feedback) == {n for n, _ in weight_layers(learner.model)[1:]}


@pytest.mark.parametrize("rule", ["pc", "ff", "dtp", "fwd_grad", "ga", "es", "cmaes", "snn_bptt", "snn_dfa"])
def test_rules_that_cannot_route_feedback_refuse_a_resnet_naming_their_archs(rule: str) -> None:
    cls = learner_registry().get(rule)
    with pytest.raises(
        ValueError,
        match=r"model.arch = 'resnet': \w+ trains only arch = 'cnn' \| 'lenet' \| 'mlp'|"
        r"model.arch = 'resnet': \w+ trains only arch = 'mlp'",
    ):
        cls.check_model(ModelSpec(arch="resnet", depth=8))
    study = {"tasks": ["digits"], "model": {"arch": "resnet", "depth": 8}, "learners": {rule: {}}}
    with pytest.raises(ConfigError, match=f"learners.{rule}: model.arch = 'resnet': .* trains only arch = "):
        expand("t", study, learner_registry(), task_registry())  # before any run


@pytest.mark.parametrize("rule", ["backprop", "fa", "dfa", "sign_symmetry", "brsf", "frsf"])
def test_feedback_family_trains_a_resnet_and_reports_every_layer(rule: str) -> None:
    learner = make(rule)
    x, y = batch()
    losses = [learner.train_step(x, y).loss for _ in range(8)]
    assert losses[-1] < losses[0]  # one batch, eight steps: it learns
    names = {n for n, _ in weight_layers(learner.model)}
    assert set(learner.update_signal()) == names
    assert set(learner.true_gradient(x, y)) == names
