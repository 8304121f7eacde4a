"""Predictive coding (learners/pc.py): its updates approximate backprop's, inference lowers the
energy, bad settings are refused, same seed gives the same run."""

from __future__ import annotations

import pytest
import torch

from bpbench.experiments.front.conformance import check_learner
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.learners.models import ModelSpec
from bpbench.learners.pc import PCParams, PredictiveCoding


def make(data, seed: int = 0, model: ModelSpec | None = None, **params) -> PredictiveCoding:
    return PredictiveCoding(
        model or ModelSpec(hidden=(64, 64)),
        data.info,
        PCParams(**params),
        torch.Generator().manual_seed(seed),
        torch.device("cpu"),
    )


def cosines(learner: PredictiveCoding, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Per-layer cosine of the update signal of one step with the true gradient before it."""
    reference = learner.true_gradient(x, y)
    learner.train_step(x, y)
    signal = learner.update_signal()
    return {
        k: float(torch.nn.functional.cosine_similarity(signal[k].flatten(), reference[k].flatten(), dim=0))
        for k in reference
    }


@pytest.mark.parametrize("gamma, steps", [(0.01, 100), (0.1, 100)])
def test_update_follows_the_backprop_gradient_at_initialization(digits, gamma: float, steps: int) -> None:
    # PC's defining property (Whittington & Bogacz 2017): relaxed errors are backprop's errors.
    # (small errors make the relaxed state close to the feedforward one: the study's width)
    x, y = digits.train.x[:64], digits.train.y[:64]
    cos = cosines(make(digits, model=ModelSpec(hidden=(256, 256)), gamma=gamma, inference_steps=steps), x, y)
    assert list(cos) == ["fc1", "fc2", "out"]
    assert all(c >= 0.9 for c in cos.values()), cos


def test_inference_lowers_the_energy_and_moves_every_layer(digits) -> None:
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(digits)
    learner.train_step(x, y)
    energy = {m: v for m, _, v in learner.diagnostics()}
    assert energy["pc_energy_last"] < energy["pc_energy_first"]
    # before any inference the energy is the feedforward cross-entropy of the initial network
    fresh = make(digits)
    ce = float(torch.nn.functional.cross_entropy(fresh.predict(x), y))
    assert energy["pc_energy_first"] == pytest.approx(ce, rel=1e-5)
    assert all(float(g.norm()) > 0 for g in learner.update_signal().values())
    # one inference step reaches only the top hidden layer: fc1 gets no error yet
    one = make(digits, inference_steps=1)
    one.train_step(x, y)
    assert float(one.update_signal()["fc1"].norm()) == 0.0 and float(one.update_signal()["fc2"].norm()) > 0


def test_no_layer_is_exact_by_construction(digits) -> None:
    # the output layer's update is the loss gradient at the relaxed activity, not the feedforward one
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(digits)
    assert learner.exact_layers() == frozenset()
    assert cosines(learner, x, y)["out"] < 1 - 1e-6


def test_a_linear_model_has_nothing_to_relax(digits) -> None:
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(digits, model=ModelSpec(hidden=()))
    reference = learner.true_gradient(x, y)
    learner.train_step(x, y)
    assert learner.exact_layers() == frozenset({"out"})
    assert torch.allclose(learner.update_signal()["out"], reference["out"], atol=1e-6)
    mse = make(digits, model=ModelSpec(hidden=()), top_loss="mse")
    reference = mse.true_gradient(x, y)  # the squared-error gradient: the loss it trains
    mse.train_step(x, y)
    assert mse.exact_layers() == frozenset({"out"})
    assert torch.allclose(mse.update_signal()["out"], reference["out"], atol=1e-6)


def test_learns_digits(digits) -> None:
    learner = make(digits, seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(digits.train), (64,), generator=gen)
        learner.train_step(digits.train.x[idx], digits.train.y[idx])
    acc = float((learner.predict(digits.test.x).argmax(1) == digits.test.y).float().mean())
    assert acc > 0.85, acc


def test_mse_top_loss_and_conformance(digits) -> None:
    check_learner(PredictiveCoding, digits, params=PCParams(top_loss="mse", inference_steps=3))
    check_learner(PredictiveCoding, digits, model=ModelSpec(hidden=(16, 16, 16), activation="tanh"))


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"gamma": 0.0}, "gamma = 0.0"),
        ({"gamma": -1.0}, "gamma = -1.0"),
        ({"inference_steps": 0}, "inference_steps = 0"),
        ({"lr": 0.0}, "lr = 0.0"),
    ],
)
def test_bad_params_raise(params: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        PCParams(**params)


@pytest.mark.parametrize(
    "model, needle",
    [
        (ModelSpec(arch="cnn"), "model.arch = 'cnn': PredictiveCoding trains only arch = 'mlp'"),
        (ModelSpec(batchnorm=True), "model.batchnorm"),
        (ModelSpec(dropout=0.2), "model.dropout = 0.2"),
    ],
)
def test_unsupported_models_are_refused(digits, model: ModelSpec, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        make(digits, model=model)


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["learners.pc.inference_steps=0"], "inference_steps = 0"),
        (["learners.pc.top_loss='l1'"], "top_loss"),
    ],
)
def test_study_validation_names_the_bad_value(sets: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_study("modern", sets, learner_registry(), task_registry())
