"""Forward-forward (learners/ff.py): positive goodness rises above negative, prediction uses every
class, what is not measurable says so, bad settings are refused, same seed gives the same run."""

from __future__ import annotations

import pytest
import torch

from bpbench.experiments.front.conformance import check_learner
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.learners.base import NotMeasurable
from bpbench.learners.ff import FFParams, ForwardForward
from bpbench.learners.models import ModelSpec


def make(data, seed: int = 0, model: ModelSpec | None = None, **params) -> ForwardForward:
    return ForwardForward(
        model or ModelSpec(hidden=(128, 128)),
        data.info,
        FFParams(**params),
        torch.Generator().manual_seed(seed),
        torch.device("cpu"),
    )


def goodness_gap(learner: ForwardForward) -> dict[str, float]:
    """Per layer: mean goodness of positive minus negative data on the last step's batch."""
    rows = learner.diagnostics()
    pos = {layer: v for m, layer, v in rows if m == "ff_goodness_pos"}
    neg = {layer: v for m, layer, v in rows if m == "ff_goodness_neg"}
    return {layer: pos[layer] - neg[layer] for layer in pos}


@pytest.fixture(scope="module")
def trained(digits) -> tuple[ForwardForward, dict[str, float], dict[str, float]]:
    """A learner after 300 steps on digits; per layer, the goodness gap (positive minus
    negative) of its first step and the mean gap of its last 20 steps."""
    learner, gen = make(digits), torch.Generator().manual_seed(0)
    gaps = []
    for _ in range(300):
        idx = torch.randint(0, len(digits.train), (64,), generator=gen)
        learner.train_step(digits.train.x[idx], digits.train.y[idx])
        gaps.append(goodness_gap(learner))
    last = {layer: sum(g[layer] for g in gaps[-20:]) / 20 for layer in gaps[0]}
    return learner, gaps[0], last


def test_positive_goodness_rises_above_negative(trained) -> None:
    _, first, last = trained
    assert list(last) == ["fc1", "fc2"]
    assert all(abs(gap) < 1 for gap in first.values()), first  # untrained: goodness ~26 for both
    # the logistic loss on G - 128 saturates a few units away: a gap of 5 is ~.99 confidence
    assert all(gap > 5 for gap in last.values()), last


def test_prediction_uses_every_class_and_beats_chance(trained, digits) -> None:
    learner, _, _ = trained
    scores = learner.predict(digits.test.x)
    assert scores.shape == (len(digits.test), 10)
    predicted = scores.argmax(1)
    assert set(predicted.tolist()) == set(range(10))
    assert float((predicted == digits.test.y).float().mean()) > 0.8


def test_label_embedding(digits) -> None:
    learner = make(digits)
    x = digits.train.x[:8]
    learner.train_step(x, digits.train.y[:8])
    assert float(learner.label_scale) == pytest.approx(max(1.0, float(x.max())))
    labels = torch.arange(8)
    embedded = learner.embed(x, labels)
    assert torch.equal(embedded[:, :10], torch.nn.functional.one_hot(labels, 10).float() * learner.label_scale)
    assert torch.equal(embedded[:, 10:], x.flatten(1)[:, 10:])


def test_measurements_that_do_not_apply(digits) -> None:
    learner = make(digits)
    x, y = digits.train.x[:64], digits.train.y[:64]
    with pytest.raises(NotMeasurable, match="no backprop gradient"):
        learner.true_gradient(x, y)
    learner.train_step(x, y)
    signal = learner.update_signal()
    assert list(signal) == ["fc1", "fc2", "out"]
    assert float(signal["fc1"].norm()) > 0 and float(signal["fc2"].norm()) > 0
    assert float(signal["out"].norm()) == 0.0  # never trained: its update is zero
    assert learner.exact_layers() == frozenset()


def test_gradients_stay_within_their_layer(digits) -> None:
    # fc1's update is the gradient of fc1's own loss only: changing fc2's threshold leaves it unchanged
    x, y = digits.train.x[:64], digits.train.y[:64]
    a, b = make(digits, seed=5), make(digits, seed=5)
    b.threshold = [a.threshold[0], 1.0]
    a.train_step(x, y)
    b.train_step(x, y)
    assert torch.equal(a.update_signal()["fc1"], b.update_signal()["fc1"])
    assert not torch.equal(a.update_signal()["fc2"], b.update_signal()["fc2"])


def test_conformance_on_speech_and_image(digits) -> None:
    fsdd_cls = task_registry().get("fsdd")
    check_learner(ForwardForward, fsdd_cls().load(fsdd_cls.Params()))
    check_learner(
        ForwardForward, digits, params=FFParams(threshold=2.0, norm_scale=1.5), model=ModelSpec(hidden=(16, 8))
    )


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"threshold": 0.0}, "threshold = 0.0"),
        ({"norm_scale": -1.0}, "norm_scale = -1.0"),
        ({"lr": -1.0}, "lr = -1.0"),
        ({"batch_size": 0}, "batch_size = 0"),
    ],
)
def test_bad_params_raise(params: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        FFParams(**params)


@pytest.mark.parametrize(
    "model, needle",
    [
        (ModelSpec(arch="cnn"), "model.arch = 'cnn': ForwardForward trains only arch = 'mlp'"),
        (ModelSpec(hidden=()), "model.hidden = \\[\\]"),
        (ModelSpec(batchnorm=True), "model.batchnorm"),
    ],
)
def test_unsupported_models_are_refused(digits, model: ModelSpec, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        make(digits, model=model)


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["learners.ff.negatives='hard'"], "negatives"),
        (["learners.ff.norm_scale=0"], "norm_scale = 0"),
    ],
)
def test_study_validation_names_the_bad_value(sets: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_study("modern", sets, learner_registry(), task_registry())
