"""Difference target propagation (dtp): inverses learn, no weight transport in the "target"
variant, exact layers as documented, conformance, seeding, bad input, learning on digits."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bpbench.experiments.front.conformance import check_learner
from bpbench.experiments.plan.config import to_plain
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.probes import gradient_alignment
from bpbench.experiments.run.runner import run
from bpbench.learners.dtp import DifferenceTargetPropagation, DTPParams
from bpbench.learners.models import ModelSpec, weight_layers

TANH = ModelSpec(hidden=(32, 32), activation="tanh")
CPU = torch.device("cpu")


def make(params: DTPParams, info, spec: ModelSpec = TANH, seed: int = 0) -> DifferenceTargetPropagation:
    torch.manual_seed(seed)
    return DifferenceTargetPropagation(spec, info, params, torch.Generator().manual_seed(seed), CPU)


def train(learner: DifferenceTargetPropagation, data, steps: int) -> None:
    n = len(data.train)
    for i in range(steps):
        start = (i * 64) % (n - 64)
        learner.train_step(data.train.x[start : start + 64], data.train.y[start : start + 64])


def test_trained_inverse_reconstructs_better_than_untrained(digits) -> None:
    trained = make(DTPParams(penultimate="target"), digits.info)
    train(trained, digits, 200)
    untrained = make(DTPParams(penultimate="target"), digits.info)
    # same forward weights, the inverses (and their optimizer) as initialized
    untrained.load_state_dict(
        {
            **trained.state_dict(),
            "inverses": untrained.inverses.state_dict(),
            "inverse_optimizer": untrained.inverse_optimizer.state_dict(),
        }
    )
    x = digits.test.x[:256]
    after, before = trained.reconstruction_errors(x), untrained.reconstruction_errors(x)
    assert list(after) == ["fc2", "out"] == list(before)
    for name in after:
        assert after[name] < 0.5 * before[name], (name, after[name], before[name])
    rows = trained.diagnostics()
    assert [(m, layer) for m, layer, _ in rows] == [
        ("inverse_reconstruction_error", "fc2"),
        ("inverse_reconstruction_error", "out"),
    ]


def layer_inputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each connection layer's input when ``model`` sees x (forward pre-hooks)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_pre_hook(lambda _, args, name=name: seen.__setitem__(name, args[0].detach()))
        for name, layer in weight_layers(model)
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def invisible_change(learner: DifferenceTargetPropagation, x: torch.Tensor, scale: float = 1.0) -> None:
    """Add to every weight above the first layer a matrix N with N h = 0 for each of the batch's
    layer inputs h: the forward pass on x is unchanged, Wᵀ is not. Only a rule that sends
    signals back through the weights themselves (backprop's Wᵀ) can see the difference."""
    inputs = layer_inputs(learner.model, x)
    with torch.no_grad():
        for name, layer in weight_layers(learner.model)[1:]:
            h = inputs[name].double()  # (B, n_in), B < n_in
            q, _ = torch.linalg.qr(h.T)  # orthonormal basis of the span of the batch's inputs
            noise = torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
            n = noise - noise @ q @ q.T  # rows orthogonal to every h
            n *= scale * layer.weight.norm().item() / n.norm().item()
            layer.weight += n.float()


@pytest.mark.parametrize("penultimate", ["target", "gradient"])
def test_target_variant_uses_no_weight_transport(penultimate: str, digits) -> None:
    """ "target": every update is unchanged when the weights change invisibly to the forward
    pass (noise 0, so the inverses see only the forward pass too). "gradient" is the control:
    its last hidden target uses W_outᵀ, so its hidden updates change (the test can fail)."""
    x, y = digits.train.x[:8], digits.train.y[:8]
    params = DTPParams(penultimate=penultimate, noise=0.0)
    plain, changed = make(params, digits.info), make(params, digits.info)
    invisible_change(changed, x)
    assert torch.allclose(plain.predict(x), changed.predict(x), atol=1e-5)  # the same forward pass
    plain.train_step(x, y)
    changed.train_step(x, y)
    a, b = plain.update_signal(), changed.update_signal()
    for name in ("fc1", "fc2"):
        change = float((a[name] - b[name]).norm() / a[name].norm())
        if penultimate == "target":
            assert change < 1e-4, (name, change)  # float rounding of N h = 0 only
        else:
            assert change > 1e-2, (name, change)


@pytest.mark.parametrize("penultimate", ["gradient", "target"])
def test_exact_layers_are_the_true_gradient(penultimate: str, digits) -> None:
    x, y = digits.train.x[:64], digits.train.y[:64]
    learner = make(DTPParams(penultimate=penultimate), digits.info)
    train(learner, digits, 20)
    reference = learner.true_gradient(x, y)
    learner.train_step(x, y)
    cosine, _ = gradient_alignment(learner.update_signal(), reference)
    exact = learner.exact_layers()
    assert exact == ({"out", "fc2"} if penultimate == "gradient" else {"out"})
    for name in exact:
        assert torch.allclose(learner.update_signal()[name], reference[name], atol=1e-6), name
    for name in set(cosine) - exact:
        assert cosine[name] < 0.999, (name, cosine[name])  # an approximation, not the gradient


@pytest.mark.parametrize("penultimate", ["gradient", "target"])
def test_conformance(penultimate: str, digits) -> None:
    check_learner(DifferenceTargetPropagation, digits, DTPParams(penultimate=penultimate), TANH)


def test_params_and_models_are_checked(digits) -> None:
    with pytest.raises(ValueError, match="penultimate = 'sideways': allowed are 'gradient', 'target'"):
        DTPParams(penultimate="sideways")  # type: ignore[arg-type]
    for bad, needle in [
        ({"target_step": 0.0}, "target_step = 0.0: must be > 0"),
        ({"noise": -0.1}, "noise = -0.1: must be >= 0"),
        ({"inverse_lr": 0.0}, "inverse_lr = 0.0: must be > 0"),
        ({"lr": -1.0}, "lr = -1.0"),
    ]:
        with pytest.raises(ValueError, match=needle):
            DTPParams(**bad)
    for spec, needle in [
        (ModelSpec(arch="cnn"), "model.arch = 'cnn': DifferenceTargetPropagation trains only arch = 'mlp'"),
        (ModelSpec(batchnorm=True), "batchnorm"),
        (ModelSpec(dropout=0.1), "dropout"),
        (ModelSpec(hidden=()), "at least one hidden layer"),
    ]:
        with pytest.raises(ValueError, match=needle):
            make(DTPParams(), digits.info, spec)


def run_rows(penultimate: str, seed_index: int = 0, epochs: int = 1) -> pd.DataFrame:
    params = {"penultimate": penultimate, "lr": 3e-3, "inverse_lr": 3e-3}
    spec = RunSpec(
        learner="dtp",
        label="dtp",
        params=params,
        task="digits",
        task_label="digits",
        task_params={},
        model=to_plain(TANH),
        budget={"epochs": epochs},
        schedule={"eval_every": epochs, "health_every": 5},
        seed_index=seed_index,
        study_seed=0,
    )
    return pd.DataFrame(run(spec, learner_registry(), task_registry(), CPU).rows)


def test_same_seed_same_results_and_diagnostics_recorded() -> None:
    a, b, c = run_rows("target"), run_rows("target"), run_rows("target", seed_index=1)
    untimed = lambda r: r[r["metric"] != "train_seconds"].reset_index(drop=True)
    assert untimed(a).equals(untimed(b))
    final = lambda r: r[(r["metric"] == "loss") & (r["split"] == "test")]["value"].iloc[-1]
    assert final(a) != final(c)
    errors = a[a["metric"] == "inverse_reconstruction_error"]
    assert set(errors["layer"]) == {"fc2", "out"} and (errors["value"] > 0).all()


def test_learns_digits_with_hidden_updates_along_the_gradient() -> None:
    """4 epochs on digits, tanh 32-32: far above chance (0.1), and the hidden layers' local
    updates come to point along the true gradient (a readout on untrained hidden layers
    would also beat chance; a broken target path would not align)."""
    for penultimate in ("gradient", "target"):
        rows = run_rows(penultimate, epochs=4)
        acc = rows[(rows["metric"] == "accuracy") & (rows["split"] == "test")]["value"].iloc[-1]
        assert acc > 0.75, (penultimate, acc)
        cos = rows[rows["metric"] == "grad_alignment"]
        late = cos[cos["step"] > cos["step"].median()].groupby("layer")["value"].mean()
        hidden = ["fc1"] if penultimate == "gradient" else ["fc1", "fc2"]
        assert (late[hidden] > 0.15).all(), (penultimate, late.to_dict())
