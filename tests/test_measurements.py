"""The runner's measurements work for any learner shape, stay off the training clock, record
n/a with a reason instead of failing, and count every model's inference the NeuroBench way."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pandas as pd
import pytest
import torch

import bpbench.experiments.run.runner as runner_module
from bpbench.experiments.front.conformance import ConformanceError, check_run
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.report.render import render
from bpbench.experiments.report.summary import per_run, summarize_runs
from bpbench.experiments.run.energy import ENERGY_PER_MAC_J, cost_rows
from bpbench.experiments.run.probes import forked_rng
from bpbench.experiments.run.runner import run
from bpbench.experiments.store.run_store import COLUMNS
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.base import NotMeasurable, TaskInfo
from bpbench.learners.models import ModelSpec
from learner_shapes import FrozenFeatures, NearestCentroid, WeightPerturbation

CPU = torch.device("cpu")


def registry(**extra: type) -> Any:
    return learner_registry(extra=extra)


def spec(
    learner: str,
    epochs: int = 1,
    health_every: int = 4,
    model: dict | None = None,
    params: dict | None = None,
    **budget: Any,
) -> RunSpec:
    cls = registry(**SHAPES).get(learner)
    full = {**cls.Params().__dict__, **(params or {})}
    return RunSpec(
        learner=learner,
        label=learner,
        params=full,
        task="digits",
        task_label="digits",
        task_params={},
        model=model or {"hidden": [32]},
        budget={"epochs": epochs, **budget},
        schedule={"eval_every": 1, "health_every": health_every},
        seed_index=0,
        study_seed=0,
    )


def run_rows(run_spec: RunSpec, **kwargs: Any) -> tuple[pd.DataFrame, Any]:
    result = run(run_spec, registry(**SHAPES), task_registry(), CPU, **kwargs)
    return pd.DataFrame(result.rows, columns=COLUMNS), result


class ZeroTrueGradientOnce(Backprop):
    """Backprop whose true gradient of the output layer is exactly 0 at the first sampled step
    (as when a dead layer feeds it): the cosine is undefined there, nowhere else."""

    calls = 0

    def true_gradient(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        grads = super().true_gradient(x, y)
        type(self).calls += 1
        if type(self).calls == 1:
            grads["out"] = torch.zeros_like(grads["out"])
        return grads


class ZeroLastSignal(Backprop):
    """Backprop reporting an output-layer update of exactly 0: the first/last ratio is undefined."""

    def update_signal(self) -> dict[str, torch.Tensor]:
        signal = super().update_signal()
        signal["out"] = torch.zeros_like(signal["out"])
        return signal


class RaisingEvaluation(Backprop):
    """Passes every contract check but breaks at evaluation, which only a real run reaches."""

    def evaluation_metrics(self, x: torch.Tensor) -> list[tuple[str, str, float]]:
        raise RuntimeError("evaluation_metrics is broken")


SHAPES = {
    "perturbation": WeightPerturbation,
    "frozen": FrozenFeatures,
    "centroid": NearestCentroid,
    "zero_true_gradient": ZeroTrueGradientOnce,
    "zero_last_signal": ZeroLastSignal,
    "raising_evaluation": RaisingEvaluation,
}


@pytest.mark.parametrize("name", ["perturbation", "frozen"])
def test_multi_forward_and_frozen_learners_run_with_a_peak_memory(name: str) -> None:
    rows, result = run_rows(spec(name, epochs=2))
    acc = rows[(rows.metric == "accuracy") & (rows.split == "test")]["value"]
    assert acc.iloc[-1] > acc.iloc[0]  # it trained
    assert result.summary["peak_memory_bytes"] >= 64 * 32 * 4  # at least one batch of hidden activations
    assert (rows.metric == "peak_memory_bytes").sum() == 1 and result.summary["train_flops"] > 0
    norms = rows[rows.metric == "grad_norm"]
    if name == "frozen":  # only the readout learns: no update signal for fc1, so no cosine and no ratio
        assert set(norms["layer"]) == {"out"} and "grad_norm_ratio" not in set(rows.metric)
        assert "not updated" in result.unmeasured["grad_alignment"]
        assert (
            "fewer than two layers with a finite, nonzero update-signal norm (absent, zero or not finite: fc1)"
            in result.unmeasured["grad_norm_ratio"]
        )
    else:
        assert set(norms["layer"]) == {"fc1", "out"} and (rows.metric == "grad_norm_ratio").any()
        assert (rows.metric == "grad_alignment_mean").any()  # nothing is exact by construction


def test_a_learner_without_model_runs_with_na_and_reasons() -> None:
    rows, result = run_rows(spec("centroid"))
    assert result.summary["test_accuracy"] > 0.8  # nearest class mean on digits
    assert not rows.metric.isin(["grad_norm", "grad_alignment", "grad_alignment_mean", "grad_norm_ratio"]).any()
    for metric in ("grad_norm", "grad_norm_ratio", "grad_alignment"):
        assert "no weights" in result.unmeasured[metric]
    assert result.unmeasured["grad_alignment"].count("has no model") >= 1  # true_gradient: no model to differentiate
    final = rows[rows.epoch == 1].set_index("metric")["value"]
    # no model to hook: FLOPs / 2 of predict, marked; predict is one (B, 64) x (64, 10) product
    assert final["synops_from_flops"] == 1.0 and final["macs_per_sample"] == 64 * 10
    assert final["energy_per_sample_j"] == pytest.approx(64 * 10 * ENERGY_PER_MAC_J)


def test_cost_of_a_learner_without_model_or_counted_operations_is_not_measurable(digits) -> None:
    class Constant(NearestCentroid):
        def predict(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 10)

    learner = Constant(ModelSpec(), digits.info, Constant.Params(), torch.Generator(), CPU)
    with pytest.raises(NotMeasurable, match="FLOP counter saw no operation"):
        cost_rows(learner, digits.test.x[:4])


def test_undefined_cosine_at_one_sample_is_na_and_the_run_goes_on() -> None:
    ZeroTrueGradientOnce.calls = 0
    rows, result = run_rows(spec("zero_true_gradient", health_every=5))
    cos = rows[rows.metric == "grad_alignment"]
    first = cos["step"].min()
    assert set(cos[cos.step == first]["layer"]) == {"fc1"}  # "out" is n/a at the first sample only
    assert set(cos[cos.step > first]["layer"]) == {"fc1", "out"}
    assert "layer out: cosine undefined, the true gradient is exactly 0" in result.unmeasured["grad_alignment"]
    assert result.summary["test_accuracy"] is not None


def test_zero_last_layer_norm_makes_the_ratio_na_not_a_failure() -> None:
    rows, result = run_rows(spec("zero_last_signal"))
    assert "grad_norm_ratio" not in set(rows.metric) and (rows.metric == "grad_norm").any()
    assert "the first/last ratio is undefined" in result.unmeasured["grad_norm_ratio"]


def test_single_layer_ratio_is_na() -> None:
    rows, result = run_rows(spec("backprop", model={"hidden": []}))
    assert "grad_norm_ratio" not in set(rows.metric)
    assert "1 by definition" in result.unmeasured["grad_norm_ratio"]


def test_the_clock_times_only_uninstrumented_training_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock: every read advances it by 1, so each timed region lasts exactly 1. Each
    train_step call notes whether it ran inside a timed region and under an instrument."""
    state = {"reads": 0, "instrumented": False}
    calls: list[tuple[int, bool, bool]] = []

    def fake_clock() -> float:
        state["reads"] += 1
        return float(state["reads"])

    def instrumented(measure: Any) -> Any:
        def wrapper(fn: Any, *args: Any) -> Any:
            state["instrumented"] = True
            try:
                return measure(fn, *args)
            finally:
                state["instrumented"] = False

        return wrapper

    class Noting(Backprop):
        def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Any:
            calls.append((id(self), state["reads"] % 2 == 1, state["instrumented"]))
            return super().train_step(x, y)

    monkeypatch.setitem(SHAPES, "noting", Noting)
    monkeypatch.setattr(runner_module, "count_flops", instrumented(runner_module.count_flops))
    monkeypatch.setattr(runner_module, "peak_step_memory", instrumented(runner_module.peak_step_memory))
    _, result = run_rows(spec("noting", epochs=2, health_every=3), clock_fn=fake_clock)
    learner_id = next(i for i, inside, _ in calls if inside)
    timed = [c for c in calls if c[1]]
    assert len(timed) == result.summary["steps"] and all(i == learner_id and not inst for i, _, inst in timed)
    off_clock = [c for c in calls if not c[1]]
    # digits has 1,257 training samples: shapes (64, ...) and (41, ...) are counted once each,
    # and the first step's memory once: three instrumented twin steps, none on the learner.
    assert len(off_clock) == 3 and all(inst and i != learner_id for i, _, inst in off_clock)
    assert result.summary["train_seconds"] == result.summary["steps"]


def test_twin_steps_leave_training_unchanged() -> None:
    """The instruments' twin steps fork every random stream: a run with dropout gives the same
    weights as the same steps taken by hand."""
    run_spec = spec("backprop", model={"hidden": [32], "dropout": 0.3}, health_every=10**6)
    rows, result = run_rows(run_spec)
    data = runner_module.LoadedTasks().get(run_spec, task_registry())
    learner = runner_module.build_learner(run_spec, data, registry(), CPU)
    order = torch.Generator().manual_seed(run_spec.seed + 1)
    perm = torch.randperm(len(data.train), generator=order)
    for start in range(0, len(perm), learner.batch_size):
        idx = perm[start : start + learner.batch_size]
        learner.train_step(data.train.x[idx], data.train.y[idx])
    logits = learner.predict(data.test.x)
    assert int((logits.argmax(1) == data.test.y).sum()) / len(data.test) == result.summary["test_accuracy"]
    test_loss = rows[(rows.metric == "loss") & (rows.split == "test")]["value"].iloc[-1]
    assert float(torch.nn.functional.cross_entropy(logits, data.test.y, reduction="sum")) / len(data.test) == test_loss


def test_train_accuracy_and_loss_are_the_learners_on_the_fixed_training_subset() -> None:
    """digits has 1,257 training and 360 test samples: train rows are measured on the fixed
    stratified subset of 360 training samples (the same one at every evaluation)."""
    run_spec = spec("backprop", epochs=2, health_every=10**6)
    rows, result = run_rows(run_spec)
    data = runner_module.LoadedTasks().get(run_spec, task_registry())
    subset = runner_module.train_eval_split(data)
    assert len(subset) == result.summary["train_eval_samples"] == len(data.test) == 360
    learner = runner_module.build_learner(run_spec, data, registry(), CPU)
    order = torch.Generator().manual_seed(run_spec.seed + 1)
    train = rows[rows.split == "train"].set_index(["epoch", "metric"])["value"]
    for epoch in (0, 1, 2):
        if epoch:
            perm = torch.randperm(len(data.train), generator=order)
            for start in range(0, len(perm), learner.batch_size):
                idx = perm[start : start + learner.batch_size]
                learner.train_step(data.train.x[idx], data.train.y[idx])
        logits = learner.predict(subset.x)
        assert train[(epoch, "accuracy")] == int((logits.argmax(1) == subset.y).sum()) / len(subset)
        loss = float(torch.nn.functional.cross_entropy(logits, subset.y, reduction="sum")) / len(subset)
        assert train[(epoch, "loss")] == loss
    assert torch.equal(runner_module.train_eval_split(data).x, subset.x)  # fixed


def test_reference_gradient_uses_the_steps_dropout_mask() -> None:
    rows, _ = run_rows(spec("backprop", model={"hidden": [32, 32], "dropout": 0.5}, health_every=3))
    cos = rows[rows.metric == "grad_alignment"]["value"]
    assert len(cos) > 0 and (cos - 1.0).abs().max() < 1e-9  # same mask: the step's gradient is the reference


def test_true_gradient_and_the_runner_fork_the_run_devices_generator(monkeypatch: pytest.MonkeyPatch, digits) -> None:
    """On CUDA the dropout mask is drawn from the device's generator: it must be forked too.
    Checked without a GPU by recording which devices ``fork_rng`` is asked to fork."""
    forked: list[list[Any]] = []

    @contextlib.contextmanager
    def recording_fork_rng(devices: Any = None, **kwargs: Any) -> Any:
        forked.append(list(devices))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", recording_fork_rng)
    cuda = torch.device("cuda", 0)
    with forked_rng(cuda):
        pass
    learner = Backprop(ModelSpec(hidden=(8,)), digits.info, BackpropParams(), torch.Generator().manual_seed(0), CPU)
    learner.device = cuda  # the model stays on the CPU; only the fork's device list is under test
    learner.true_gradient(digits.train.x[:8], digits.train.y[:8])
    assert forked == [[cuda], [cuda]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reference_gradient_uses_the_steps_dropout_mask_on_cuda() -> None:
    run_spec = spec("backprop", model={"hidden": [32, 32], "dropout": 0.5}, health_every=3)
    result = run(run_spec, registry(), task_registry(), torch.device("cuda"))
    cos = pd.DataFrame(result.rows).query("metric == 'grad_alignment'")["value"]
    assert len(cos) > 0 and (cos - 1.0).abs().max() < 1e-6
    assert 0 < result.summary["peak_memory_bytes"] < 50 * 2**20  # the step's own peak, not the training set


def test_backprop_energy_is_the_neurobench_effective_count() -> None:
    """A 4-3-2 MLP by hand: input feature 2 is 0, hidden unit 1 is silenced by ReLU, some weights are 0."""
    info = TaskInfo(name="toy", modality="image", input_shape=(4,), n_classes=2)
    learner = Backprop(ModelSpec(hidden=(3,)), info, BackpropParams(), torch.Generator().manual_seed(0), CPU)
    fc1, out = learner.model.fc1, learner.model.out
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 1.0], [-1.0, -1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 1.0]]))
        fc1.bias.zero_()
        out.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0, 0.0, 3.0]])  # hidden pre-activations 4, -6, 7 -> ReLU 4, 0, 7
    # fc1: nonzero inputs 0, 1, 3 -> nonzero weights in those columns: 2 + 2 + 3 = 7 (dense 12)
    # out: nonzero hidden units 0, 2 -> nonzero weights in those columns: 1 + 2 = 3 (dense 6)
    cost = {m: v for m, _, v in cost_rows(learner, x)}
    assert cost["synops_dense_per_sample"] == 18 and cost["synops_per_sample"] == 10
    assert cost["macs_per_sample"] == 10 and cost["acs_per_sample"] == 0 and "synops_from_flops" not in cost
    assert cost["energy_per_sample_j"] == pytest.approx(10 * ENERGY_PER_MAC_J)


def test_cnn_energy_excludes_zero_padding(digits) -> None:
    """A 3x3 conv with padding 1 on an 8x8 image: 36 interior taps x 9 + 24 edge x 6 + 4 corner x 4 (dense)."""
    learner = Backprop(
        ModelSpec(arch="cnn", channels=(4,), hidden=()),
        digits.info,
        BackpropParams(),
        torch.Generator().manual_seed(0),
        CPU,
    )
    cost = {m: v for m, _, v in cost_rows(learner, digits.test.x[:16])}
    conv_dense = (36 * 9 + 24 * 6 + 4 * 4) * 4  # 4 output channels
    assert cost["synops_dense_per_sample"] == conv_dense + 4 * 4 * 4 * 10
    assert cost["synops_per_sample"] <= cost["synops_dense_per_sample"]


def test_fa_alignment_summary_leaves_out_its_exact_output_layer() -> None:
    rows, result = run_rows(spec("fa", model={"hidden": [32, 32]}, health_every=5))
    assert result.summary["exact_layers"] == ["out"]
    cos = rows[rows.metric == "grad_alignment"].pivot(index="step", columns="layer", values="value")
    assert ((cos["out"] - 1.0).abs() < 1e-9).all()  # the per-layer row stays, for the figures
    mean = rows[rows.metric == "grad_alignment_mean"].set_index("step")["value"]
    pd.testing.assert_series_equal(mean, cos[["fc1", "fc2"]].mean(axis=1), check_names=False)
    runs = per_run(
        rows.assign(
            learner="fa", learner_name="fa", config="", task="digits", seed=0, budget="1 ep", stopped_by="epochs"
        )
    )
    assert runs["alignment"].iloc[0] == pytest.approx(mean.mean()) and runs["alignment"].iloc[0] < 0.99
    # the projection coefficient beside the cosine: 1 on the exact output layer, its mean over the others
    proj = rows[rows.metric == "grad_projection"].pivot(index="step", columns="layer", values="value")
    assert ((proj["out"] - 1.0).abs() < 1e-9).all() and set(proj.columns) == {"fc1", "fc2", "out"}
    proj_mean = rows[rows.metric == "grad_projection_mean"].set_index("step")["value"]
    pd.testing.assert_series_equal(proj_mean, proj[["fc1", "fc2"]].mean(axis=1), check_names=False)
    assert runs["projection"].iloc[0] == pytest.approx(proj_mean.mean())
    assert not ((proj[["fc1", "fc2"]] - 1.0).abs() < 1e-3).all().all()  # fa's hidden updates are not the gradient's


def test_backprop_alignment_is_na_in_the_table_not_a_free_one() -> None:
    rows, result = run_rows(spec("backprop", health_every=5))
    assert result.summary["exact_layers"] == ["fc1", "out"]
    assert (rows.metric == "grad_alignment").any() and not (rows.metric == "grad_alignment_mean").any()
    assert "by construction" in result.unmeasured["grad_alignment_mean"]
    runs = per_run(
        rows.assign(
            learner="backprop",
            learner_name="backprop",
            config="",
            task="digits",
            seed=0,
            budget="1 ep",
            stopped_by="epochs",
        )
    )
    assert math.isnan(runs["alignment"].iloc[0])
    proj = rows[rows.metric == "grad_projection"]["value"]
    assert len(proj) > 0 and ((proj - 1.0).abs() < 1e-6).all()  # the exact gradient: scale 1, every layer
    assert "by construction" in result.unmeasured["grad_projection_mean"] and math.isnan(runs["projection"].iloc[0])


def test_the_table_marks_energy_counted_from_flops() -> None:
    rows, _ = run_rows(spec("centroid"))
    runs = per_run(
        rows.assign(
            learner="centroid",
            learner_name="centroid",
            config="",
            task="digits",
            seed=0,
            budget="1 ep",
            stopped_by="epochs",
        )
    )
    assert runs["cost_from_flops"].iloc[0]
    text = render(summarize_runs(runs), "text")
    assert "‡" in text.splitlines()[2] and "FLOPs / 2 of predict" in text


@pytest.mark.parametrize("name", ["perturbation", "frozen", "centroid"])
def test_check_runs_the_real_runner_and_lists_what_is_na(name: str) -> None:
    meta = check_run(name, "digits", registry(**SHAPES), task_registry(), samples=128)
    assert meta["status"] == "ok" and meta["summary"]["steps"] == 2
    assert (name == "perturbation") == (not meta["unmeasured"].get("grad_alignment"))


def test_check_fails_where_only_a_real_run_reaches() -> None:
    with pytest.raises(ConformanceError, match="through the runner failed: RuntimeError: evaluation_metrics is broken"):
        check_run("raising_evaluation", "digits", registry(**SHAPES), task_registry(), samples=64)


def test_cli_check_fails_a_learner_that_diverges_in_a_real_run(with_plugins) -> None:
    """The 'exploding' plugin returns a NaN loss on fsdd: every contract check passes (the old
    ``check`` said it conforms), but a run would fail; ``check`` now runs one and says so."""
    from helpers import bpbench

    proc = bpbench("check", "exploding", "--task", "fsdd", "--samples", "64")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "through the runner failed: NonFiniteLoss: training loss is nan" in proc.stderr
    ok = bpbench("check", "exploding", "--task", "digits", "--samples", "64", check=True).stdout
    assert "conforms" in ok and "n/a grad_alignment_mean: every layer's update is the true gradient" in ok


def test_check_takes_learner_and_model_options() -> None:
    """cmaes refuses the default check model (over 1,000 weights); on a linear model it conforms,
    and its first/last gradient ratio (one layer: 1 by definition) is n/a, not '1 ± 0'."""
    from bpbench.experiments.front.conformance import check

    meta = check(
        "cmaes",
        "digits",
        learner_registry(),
        task_registry(),
        samples=128,
        params={"batch_size": 64},
        model={"hidden": []},
    )
    assert meta["summary"]["steps"] == 2
    assert meta["unmeasured"]["grad_norm_ratio"].startswith(
        "one connection layer: the first/last ratio is 1 by definition"
    )
