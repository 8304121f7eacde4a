"""Feedback alignment (fa), direct feedback alignment (dfa) and sign symmetry: the update
rules against backprop's gradients, fixed feedback, seeding, conv layers, the runner's
alignment diagnostics, and real learning on digits."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bpbench.experiments.plan.config import to_plain
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.runner import run
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import Learner, TaskInfo
from bpbench.learners.dfa import DirectFeedbackAlignment
from bpbench.learners.fa import FeedbackAlignment
from bpbench.learners.feedback import FeedbackParams, connect, through
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.learners.sign_symmetry import SignSymmetry, sign_feedback

MLP = ModelSpec(hidden=(32, 16), batchnorm=True, dropout=0.2)
CNN = ModelSpec(arch="cnn", channels=(4, 8), hidden=(16,), batchnorm=True, dropout=0.2)
CPU = torch.device("cpu")


def make(cls: type[Learner], params: object, spec: ModelSpec, info: TaskInfo, seed: int = 0) -> Learner:
    torch.manual_seed(seed)
    return cls(spec, info, params, torch.Generator().manual_seed(seed), CPU)


def step_both(a: Learner, b: Learner, x: torch.Tensor, y: torch.Tensor) -> None:
    """One train_step of each on the same batch with the same dropout masks."""
    torch.manual_seed(7)
    a.train_step(x, y)
    torch.manual_seed(7)
    b.train_step(x, y)


SMALL_MODEL = ModelSpec(hidden=(64, 32))  # run_spec's default model (frozen: safe to share)


def run_spec(
    learner: str,
    epochs: int = 1,
    model: ModelSpec = SMALL_MODEL,
    seed_index: int = 0,
    health_every: int = 5,
    params: dict | None = None,
) -> RunSpec:
    return RunSpec(
        learner=learner,
        label=learner,
        params=params or {},
        task="digits",
        task_label="digits",
        task_params={},
        model=to_plain(model),
        budget={"epochs": epochs},
        schedule={"eval_every": epochs, "health_every": health_every},
        seed_index=seed_index,
        study_seed=0,
    )


def run_rows(spec: RunSpec) -> pd.DataFrame:
    return pd.DataFrame(run(spec, learner_registry(), task_registry(), CPU).rows)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_fa_with_feedback_equal_to_weights_is_backprop(spec: ModelSpec, digits) -> None:
    x, y = digits.train.x[:32], digits.train.y[:32]
    bp = make(Backprop, BackpropParams(), spec, digits.info)
    fa = make(FeedbackAlignment, FeedbackParams(), spec, digits.info)
    layers = dict(weight_layers(fa.model))
    assert set(fa.feedback) == set(list(layers)[1:])
    for name, b in fa.feedback.items():
        b.copy_(layers[name].weight)  # B := W
    step_both(bp, fa, x, y)
    expected, got = bp.update_signal(), fa.update_signal()
    assert list(got) == list(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    assert torch.equal(fa.predict(x), bp.predict(x))


@pytest.mark.parametrize("layer", [nn.Linear(12, 5), nn.Conv2d(3, 4, 3, stride=2, padding=1)], ids=["linear", "conv"])
def test_route_through_matrix_sends_error_through_it(layer: nn.Module) -> None:
    """x's gradient is the one a layer with weights B would give; W's and b's are backprop's."""
    torch.manual_seed(0)
    x = torch.randn(6, 12) if isinstance(layer, nn.Linear) else torch.randn(6, 3, 9, 9)
    b = torch.randn_like(layer.weight)
    x1 = x.clone().requires_grad_(True)
    out = connect(layer, x1, through(layer, b))
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    x2 = x.clone().requires_grad_(True)
    with_b = F.linear(x2, b) if isinstance(layer, nn.Linear) else F.conv2d(x2, b, None, layer.stride, layer.padding)
    with_b.backward(grad_out)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6)
    expected = torch.autograd.grad(layer(x), [layer.weight, layer.bias], grad_out)
    assert torch.allclose(layer.weight.grad, expected[0], atol=1e-6) and torch.allclose(layer.bias.grad, expected[1])


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_random_feedback_changes_hidden_updates_only(spec: ModelSpec, digits) -> None:
    """With random B (or DFA), the output layer's update is exactly backprop's; hidden ones differ."""
    x, y = digits.train.x[:32], digits.train.y[:32]
    for cls, params in (
        (FeedbackAlignment, FeedbackParams()),
        (DirectFeedbackAlignment, FeedbackParams()),
        (SignSymmetry, BackpropParams()),
    ):
        other = make(cls, params, spec, digits.info)
        bp = make(Backprop, BackpropParams(), spec, digits.info)
        step_both(bp, other, x, y)
        expected, got = bp.update_signal(), other.update_signal()
        names = list(expected)
        assert torch.equal(got[names[-1]], expected[names[-1]]), cls.__name__
        for name in names[:-1]:
            assert not torch.allclose(got[name], expected[name]), (cls.__name__, name)


def test_dfa_hidden_update_is_projected_output_error(digits) -> None:
    """One hidden layer: dfa's fc1 gradient is ((e @ B) * relu'(a1))ᵀ x, e = dLoss/dlogits."""
    spec = ModelSpec(hidden=(32,))
    x, y = digits.train.x[:64], digits.train.y[:64]
    dfa = make(DirectFeedbackAlignment, FeedbackParams(feedback_scale=2.0), spec, digits.info)
    model = dfa.model
    flat = x.flatten(1)
    a1 = F.linear(flat, model.fc1.weight, model.fc1.bias)
    logits = model.out(torch.relu(a1))
    e = (logits.softmax(1) - F.one_hot(y, 10)) / len(y)
    delta = (e @ dfa.feedback["out"]) * (a1 > 0)
    expected = (delta.T @ flat).detach()
    dfa.train_step(x, y)
    assert torch.allclose(dfa.update_signal()["fc1"], expected, atol=1e-7, rtol=1e-5)


def test_sign_symmetry_is_fa_through_scaled_sign_of_weights(digits) -> None:
    x, y = digits.train.x[:32], digits.train.y[:32]
    ss = make(SignSymmetry, BackpropParams(), CNN, digits.info)
    fa = make(FeedbackAlignment, FeedbackParams(), CNN, digits.info)
    layers = dict(weight_layers(fa.model))
    for name, b in fa.feedback.items():
        b.copy_(sign_feedback(layers[name]))
        assert set(b.abs().flatten().tolist()) <= {b.abs().max().item()}  # one magnitude: only signs carry
    step_both(ss, fa, x, y)
    for name, g in fa.update_signal().items():
        assert torch.equal(ss.update_signal()[name], g), name


@pytest.mark.parametrize("cls", [FeedbackAlignment, DirectFeedbackAlignment])
def test_feedback_is_fixed_saved_and_seeded(cls: type[Learner], digits) -> None:
    learner = make(cls, FeedbackParams(), CNN, digits.info, seed=0)
    before = {n: b.clone() for n, b in learner.feedback.items()}
    weights = {n: m.weight.detach().clone() for n, m in weight_layers(learner.model)}
    for start in range(0, 640, 64):
        learner.train_step(digits.train.x[start : start + 64], digits.train.y[start : start + 64])
    assert all(torch.equal(learner.feedback[n], b) for n, b in before.items())
    assert all(not torch.equal(m.weight, weights[n]) for n, m in weight_layers(learner.model))
    assert not any(b.requires_grad for b in learner.feedback.values())
    other_seed = make(cls, FeedbackParams(), CNN, digits.info, seed=1)
    assert all(not torch.equal(other_seed.feedback[n], b) for n, b in before.items())
    other_seed.load_state_dict(learner.state_dict())
    assert all(torch.equal(other_seed.feedback[n], b) for n, b in before.items())


def test_feedback_params_are_checked() -> None:
    with pytest.raises(ValueError, match=r"feedback_scale = 0.0: must be > 0"):
        FeedbackParams(feedback_scale=0.0)
    with pytest.raises(ValueError, match=r"lr = -1"):
        FeedbackParams(lr=-1)


def test_backprop_grad_alignment_is_exactly_one(digits) -> None:
    rows = run_rows(run_spec("backprop", model=ModelSpec(hidden=(64, 32), batchnorm=True, dropout=0.2)))
    cos = rows[rows["metric"] == "grad_alignment"]
    steps = -(-len(digits.train) // 64)
    assert len(cos) == 3 * (steps // 5) and set(cos["layer"]) == {"fc1", "fc2", "out"}
    assert (cos["value"] - 1.0).abs().max() < 1e-9


@pytest.mark.parametrize("learner", ["fa", "dfa"])
def test_same_seed_same_results(learner: str) -> None:
    a, b = run_rows(run_spec(learner)), run_rows(run_spec(learner))
    c = run_rows(run_spec(learner, seed_index=1))
    timed = ["train_seconds"]
    same = a[~a["metric"].isin(timed)].reset_index(drop=True)
    assert same.equals(b[~b["metric"].isin(timed)].reset_index(drop=True))
    final = lambda r: r[(r["metric"] == "loss") & (r["split"] == "test")]["value"].iloc[-1]
    assert final(a) != final(c)


def test_learners_learn_digits_with_alignment_diagnostics() -> None:
    """6 epochs on digits: well above chance (0.1); updates point along the true gradient."""
    for learner in ("fa", "dfa", "sign_symmetry"):
        rows = run_rows(run_spec(learner, epochs=6, health_every=10, params={"lr": 3e-3}))
        acc = rows[(rows["metric"] == "accuracy") & (rows["split"] == "test")]["value"].iloc[-1]
        assert acc > 0.85, (learner, acc)
        cos = rows[rows["metric"] == "grad_alignment"]
        assert (cos[cos["layer"] == "out"]["value"] - 1.0).abs().max() < 1e-9, learner
        hidden = cos[cos["layer"] != "out"].groupby("layer")["value"].mean()
        assert list(hidden.index) == ["fc1", "fc2"] and (hidden > 0.1).all(), (learner, hidden.to_dict())
        angles = rows[rows["metric"] == "weight_feedback_angle_deg"]
        if learner == "dfa":
            assert angles.empty
        else:
            assert set(angles["layer"]) == {"fc2", "out"}
            last = angles.groupby("layer")["value"].last()
            assert ((last > 0) & (last < 90)).all(), (learner, last.to_dict())


@pytest.mark.parametrize("learner", ["fa", "dfa", "sign_symmetry"])
def test_conv_layers_learn(learner: str) -> None:
    """6 epochs of a small CNN on digits: far above chance (0.1), conv updates within 90° of the gradient."""
    rows = run_rows(
        run_spec(
            learner,
            epochs=6,
            model=ModelSpec(arch="cnn", channels=(8, 16), hidden=(32,)),
            health_every=10,
            params={"lr": 1e-2},
        )
    )
    acc = rows[(rows["metric"] == "accuracy") & (rows["split"] == "test")]["value"].iloc[-1]
    assert acc > 0.5, acc
    cos = rows[rows["metric"] == "grad_alignment"].groupby("layer")["value"].mean()
    assert set(cos.index) == {"conv1", "conv2", "fc1", "out"}
    assert (cos[["conv1", "conv2"]] > 0).all(), cos.to_dict()


def test_alignment_study_reports_mean_alignment_in_table(tmp_path) -> None:
    """The built-in alignment study, shrunk to one seed and epoch on digits, through the CLI."""
    from bpbench.experiments.front.cli import main
    from bpbench.experiments.report.summary import summarize
    from bpbench.experiments.store.run_store import RunStore
    from bpbench.experiments.store.run_table import RunTable

    code = main(
        [
            "run",
            "alignment",
            "--out",
            str(tmp_path),
            "--executor",
            "inline",
            "--device",
            "cpu",
            "--set",
            "seeds=1",
            "--set",
            "budget.epochs=1",
            "--set",
            'tasks=["digits"]',
        ]
    )
    assert code == 0
    table = summarize(RunTable.read(RunStore(tmp_path))).rows.set_index("learner")
    assert set(table.index) == {"backprop", "fa", "dfa"}
    # The column averages only layers whose update is not exact by construction: every layer of
    # backprop is (n/a, not a free 1.0); fa's and dfa's output layer is, so their hidden layers remain.
    assert math.isnan(table.loc["backprop", "alignment_mean"])
    for learner in ("fa", "dfa"):
        assert 0 < table.loc[learner, "alignment_mean"] < 0.99, table.loc[learner, "alignment_mean"]
