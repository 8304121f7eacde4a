"""Forward gradients (fwd_grad): unbiased estimates from torch.func.jvp and no backward pass,
FLOPs counted as an efficient implementation needs them, conformance, seeding, bad input, learning on digits."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bpbench.experiments.front.conformance import check_learner
from bpbench.experiments.plan.config import to_plain
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.probes import count_flops
from bpbench.experiments.run.runner import run
from bpbench.learners import fwd_grad as fwd_grad_module
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.fwd_grad import PERTURB, ForwardGradient, ForwardGradientParams
from bpbench.learners.models import ModelSpec

CPU = torch.device("cpu")
TINY = ModelSpec(hidden=(4,))


def make(params: ForwardGradientParams, info, spec: ModelSpec = TINY, seed: int = 0) -> ForwardGradient:
    torch.manual_seed(seed)
    return ForwardGradient(spec, info, params, torch.Generator().manual_seed(seed), CPU)


def cosine_of_estimate(learner: ForwardGradient, x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine between one step's estimate (all weight layers together) and the true gradient."""
    reference = learner.true_gradient(x, y)
    learner.train_step(x, y)
    estimate = learner.update_signal()
    a = torch.cat([estimate[k].flatten() for k in reference]).double()
    b = torch.cat([g.flatten() for g in reference.values()]).double()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("perturb, few, many, floor", [("weight", 10, 600, 0.8), ("activity", 3, 100, 0.95)])
def test_mean_of_many_tangents_approaches_the_true_gradient(
    perturb: str, few: int, many: int, floor: float, digits
) -> None:
    """(∇L·v) v is unbiased: averaging more tangents drives the cosine with ∇L toward 1
    (a biased estimate, e.g. a wrong sign or a mismatched tangent, would level off or go negative)."""
    x, y = digits.train.x[:32], digits.train.y[:32]
    spec = ModelSpec(hidden=(2,))  # 160 parameters: the weight variant's variance grows with their number
    rough = cosine_of_estimate(make(ForwardGradientParams(perturb=perturb, tangents=few), digits.info, spec), x, y)
    fine = cosine_of_estimate(make(ForwardGradientParams(perturb=perturb, tangents=many), digits.info, spec), x, y)
    assert fine > floor and fine > rough, (rough, fine)


@pytest.mark.parametrize("perturb", ["weight", "activity"])
def test_jvp_computes_the_estimate_without_backward(perturb: str, digits, monkeypatch: pytest.MonkeyPatch) -> None:
    """Doubling the loss's directional derivative doubles the estimate exactly (weight: what
    torch.func.jvp returns, once per tangent; activity: each example's slope, once per tangent and
    layer); backward() and autograd.grad are never called."""
    x, y = digits.train.x[:32], digits.train.y[:32]
    params = ForwardGradientParams(perturb=perturb, tangents=2)
    plain, doubled = make(params, digits.info), make(params, digits.info)
    plain.train_step(x, y)
    calls = []

    def forbidden(*args, **kwargs):
        raise AssertionError("fwd_grad called a backward pass")

    if perturb == "weight":
        real_jvp = torch.func.jvp

        def doubling_jvp(*args, **kwargs):
            primal, tangent = real_jvp(*args, **kwargs)
            calls.append(1)
            return primal, 2 * tangent

        monkeypatch.setattr(torch.func, "jvp", doubling_jvp)
    else:
        real_slopes = fwd_grad_module.loss_slopes

        def doubling_slopes(*args, **kwargs):
            calls.append(1)
            return 2 * real_slopes(*args, **kwargs)

        monkeypatch.setattr(fwd_grad_module, "loss_slopes", doubling_slopes)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    doubled.train_step(x, y)
    assert len(calls) == (2 if perturb == "weight" else 2 * 2)  # tangents (x layers for activity)
    for name, g in plain.update_signal().items():
        assert torch.allclose(doubled.update_signal()[name], 2 * g, rtol=1e-5, atol=1e-7), name


def test_no_layer_is_exact(digits) -> None:
    """Every layer's update is an estimate, so every layer enters the alignment summary."""
    for perturb in PERTURB:
        assert make(ForwardGradientParams(perturb=perturb), digits.info).exact_layers() == frozenset()


@pytest.mark.parametrize("spec", [ModelSpec(hidden=(32, 16)), ModelSpec(hidden=(256, 256))], ids=["32-16", "256-256"])
def test_counted_flops_are_what_an_efficient_implementation_needs(spec: ModelSpec, digits) -> None:
    """torch.utils.flop_counter on one step, batch 64: weight perturbation is one forward with one
    jvp, equal in theory to backprop's forward and backward (within 5%); activity perturbation
    within 10%. (Multiplying the input's all-zero tangent by W₁ made weight 1.33x; recomputing
    the forward above each perturbed layer made activity 1.24x.)"""
    x, y = digits.train.x[:64], digits.train.y[:64]
    backprop = Backprop(spec, digits.info, BackpropParams(), torch.Generator().manual_seed(0), CPU)
    _, reference = count_flops(lambda: backprop.train_step(x, y))
    ratios = {}
    for perturb in PERTURB:
        learner = make(ForwardGradientParams(perturb=perturb), digits.info, spec)
        _, step = count_flops(lambda learner=learner: learner.train_step(x, y))
        ratios[perturb] = step / reference
    assert abs(ratios["weight"] - 1) <= 0.05 and abs(ratios["activity"] - 1) <= 0.10, ratios


@pytest.mark.parametrize(
    "perturb, spec",
    [
        ("weight", ModelSpec(hidden=(32,), dropout=0.2)),
        ("weight", ModelSpec(arch="cnn", channels=(4,), hidden=(16,))),
        ("activity", ModelSpec(hidden=(32, 16))),
    ],
    ids=["weight-mlp-dropout", "weight-cnn", "activity-mlp"],
)
def test_conformance(perturb: str, spec: ModelSpec, digits) -> None:
    check_learner(ForwardGradient, digits, ForwardGradientParams(perturb=perturb), spec)


def test_params_and_models_are_checked(digits) -> None:
    with pytest.raises(ValueError, match="perturb = 'both': allowed are 'weight', 'activity'"):
        ForwardGradientParams(perturb="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tangents = 0: must be an integer >= 1"):
        ForwardGradientParams(tangents=0)
    for perturb, spec, needle in [
        ("weight", ModelSpec(batchnorm=True), "batchnorm = true is not supported"),
        ("activity", ModelSpec(arch="cnn"), "allowed is 'mlp'"),
        ("activity", ModelSpec(dropout=0.1), "dropout = 0.1"),
    ]:
        with pytest.raises(ValueError, match=needle):
            make(ForwardGradientParams(perturb=perturb), digits.info, spec)


def run_rows(perturb: str, seed_index: int = 0, epochs: int = 1, lr: float = 1e-3) -> pd.DataFrame:
    spec = RunSpec(
        learner="fwd_grad",
        label="fwd_grad",
        params={"perturb": perturb, "lr": lr},
        task="digits",
        task_label="digits",
        task_params={},
        model=to_plain(ModelSpec(hidden=(32, 32))),
        budget={"epochs": epochs},
        schedule={"eval_every": epochs, "health_every": 5},
        seed_index=seed_index,
        study_seed=0,
    )
    return pd.DataFrame(run(spec, learner_registry(), task_registry(), CPU).rows)


@pytest.mark.parametrize("perturb", ["weight", "activity"])
def test_same_seed_same_results(perturb: str) -> None:
    a, b, c = run_rows(perturb), run_rows(perturb), run_rows(perturb, seed_index=1)
    untimed = lambda r: r[r["metric"] != "train_seconds"].reset_index(drop=True)
    assert untimed(a).equals(untimed(b))
    final = lambda r: r[(r["metric"] == "loss") & (r["split"] == "test")]["value"].iloc[-1]
    assert final(a) != final(c)


def test_activity_perturbation_learns_digits_with_aligned_updates() -> None:
    """4 epochs on digits, 32-32 ReLU: far above chance (0.1); every layer's estimate points
    along the true gradient on average."""
    rows = run_rows("activity", epochs=4, lr=5e-3)
    acc = rows[(rows["metric"] == "accuracy") & (rows["split"] == "test")]["value"].iloc[-1]
    assert acc > 0.6, acc
    cos = rows[rows["metric"] == "grad_alignment"].groupby("layer")["value"].mean()
    assert list(cos.index) == ["fc1", "fc2", "out"] and (cos > 0.1).all(), cos.to_dict()
