"""Spiking learners (snn_bptt, snn_dfa), their encoders, synaptic operations and energy."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.energy import ENERGY_PER_AC_J, ENERGY_PER_MAC_J, cost_rows, energy_joules
from bpbench.experiments.run.runner import run
from bpbench.learners.backprop import Backprop, BackpropParams
from bpbench.learners.encoders import latency, rate
from bpbench.learners.models import ModelSpec, weight_layers
from bpbench.learners.snn_bptt import SpikingBPTT
from bpbench.learners.snn_dfa import SpikingDFA, SpikingDFAParams, surrogate_derivative
from bpbench.learners.spiking import SpikingParams, Trace
from bpbench.learners.synops import count_synops
from bpbench.tasks.fsdd import Fsdd

CPU = torch.device("cpu")
SMALL = ModelSpec(hidden=(32,))


def make(cls, data, seed=0, spec=SMALL, **params):
    params_cls = SpikingDFAParams if cls is SpikingDFA else SpikingParams
    torch.manual_seed(seed)
    return cls(spec, data.info, params_cls(**params), torch.Generator().manual_seed(seed), CPU)


def batch(data, n=64, start=0):
    return data.train.x[start : start + n], data.train.y[start : start + n]


def test_rate_code_is_seeded_and_latency_fires_once() -> None:
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = rate(x, 12, torch.Generator().manual_seed(3)).x
    b = rate(x, 12, torch.Generator().manual_seed(3)).x
    c = rate(x, 12, torch.Generator().manual_seed(4)).x
    assert a.shape == (12, 8, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    spikes = latency(x, 12).x
    assert spikes.shape == (12, 8, 1, 8, 8) and spikes.sum(0).max() == 1
    brightest = x.flatten(1).argmax(1)  # fires at step 0
    assert torch.all(spikes[0].flatten(1)[torch.arange(8), brightest] == 1)


@pytest.mark.parametrize("cls", [SpikingBPTT, SpikingDFA])
def test_same_seed_gives_identical_spikes_and_results(cls, digits) -> None:
    runs = []
    for seed in (0, 0, 1):
        learner = make(cls, digits, seed=seed, encoding="rate", num_steps=8)
        for i in range(3):
            learner.train_step(*batch(digits, start=64 * i))
        trace = Trace()
        learner.simulate_eval(digits.test.x[:32], trace)
        runs.append((learner.predict(digits.test.x[:32]), trace.spikes["fc1"], learner.model.fc1.weight.detach()))
    (p0, s0, w0), (p1, s1, w1), (_p2, s2, w2) = runs
    assert torch.equal(p0, p1) and torch.equal(s0, s1) and torch.equal(w0, w1)
    assert not torch.equal(w0, w2) and not torch.equal(s0, s2)
    assert s0.sum() > 0  # there are spikes to compare


def test_synops_of_a_linear_layer_equal_a_hand_count() -> None:
    layer = nn.Linear(4, 3, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    spikes = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    ops = count_synops(layer, lambda: layer(spikes), n_samples=2)[""]
    # sample 1: inputs 0 and 2 fire -> nonzero weights in columns 0 and 2: 2 + 3 = 5
    # sample 2: input 3 fires -> nonzero weights in column 3: 2.  Per sample: 7 / 2.
    assert ops.accumulate and ops.dense == 12 and ops.effective == 3.5
    analog = count_synops(layer, lambda: layer(spikes * 0.5), n_samples=2)[""]
    assert not analog.accumulate and analog.effective == 3.5


def test_synops_of_a_conv_layer_equal_a_hand_count() -> None:
    layer = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]))
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0  # the centre pixel is in all 4 windows, under a nonzero weight in 2
    ops = count_synops(layer, lambda: layer(x), n_samples=1)[""]
    assert ops.accumulate and ops.dense == 4 * 4 and ops.effective == 2


def test_learner_synops_match_its_spikes(digits) -> None:
    learner = make(SpikingBPTT, digits, num_steps=6)
    x = digits.test.x[:16]
    trace = Trace()
    learner.simulate_eval(x, trace)
    ops = learner.inference_cost(x)
    nonzero_out_cols = (learner.model.out.weight != 0).sum(0).float()
    hand = float((trace.spikes["fc1"].sum((0, 1)) * nonzero_out_cols).sum()) / 16
    assert ops["out"].accumulate and ops["out"].effective == pytest.approx(hand)
    assert ops["out"].dense == 6 * 32 * 10
    assert not ops["fc1"].accumulate and ops["fc1"].dense == 64 * 32  # direct current: once per sample


def test_energy_uses_the_stated_constants(digits) -> None:
    assert pytest.approx(4.6e-12) == ENERGY_PER_MAC_J and pytest.approx(0.9e-12) == ENERGY_PER_AC_J
    assert energy_joules(1000, 2000) == pytest.approx(1000 * 4.6e-12 + 2000 * 0.9e-12)
    spiking = dict((m, v) for m, _, v in cost_rows(make(SpikingBPTT, digits), digits.test.x[:16]))
    assert spiking["acs_per_sample"] > 0 and spiking["macs_per_sample"] == 64 * 32
    assert spiking["energy_per_sample_j"] == pytest.approx(
        spiking["macs_per_sample"] * 4.6e-12 + spiking["acs_per_sample"] * 0.9e-12
    )
    bp = Backprop(ModelSpec(hidden=(32,)), digits.info, BackpropParams(), torch.Generator().manual_seed(0), CPU)
    x = digits.test.x[:16]
    counted = dict((m, v) for m, _, v in cost_rows(bp, x))
    # the same NeuroBench hooks as the spiking learners: zero inputs (the ReLU's zeros) cost nothing
    hidden = bp.model.act_fc1(bp.model.fc1(bp.model.flatten(x)))
    effective = (float((x != 0).sum()) * 32 + float((hidden != 0).sum()) * 10) / 16  # all weights are nonzero
    assert counted["synops_dense_per_sample"] == 64 * 32 + 32 * 10
    assert counted["macs_per_sample"] == pytest.approx(effective) and counted["acs_per_sample"] == 0
    assert counted["macs_per_sample"] < 64 * 32 + 32 * 10
    assert counted["energy_per_sample_j"] == pytest.approx(effective * 4.6e-12)


def snntorch_loop(net, inp, readout):
    """The time loop as snntorch runs it: every neuron called as a module, its membrane in ``neuron.mem``."""
    net.reset()
    if inp.constant:
        current, currents = net._stem(inp.x, None, True, inp.steps), None
    else:
        current, currents = None, net._stem(inp.x.flatten(0, 1), None, False, inp.steps).unflatten(0, (inp.steps, -1))
    total = 0.0
    for t in range(inp.steps):
        h = current if currents is None else currents[t]
        for _, m in net.body:
            h = m(h)
        total = total + (h if readout == "spikes" else net.neurons[-1][1].mem)
    net.reset()
    return total if readout == "spikes" else total / inp.steps


@pytest.mark.parametrize(
    "task, options",
    [
        ("digits", {"encoding": "direct", "readout": "membrane"}),
        ("digits", {"encoding": "rate", "readout": "spikes"}),
        ("digits", {"encoding": "direct", "readout": "spikes", "learn_beta": True, "surrogate": "atan"}),
        ("fsdd", {"encoding": "direct", "readout": "membrane", "learn_beta": True}),
    ],
)
def test_time_loop_is_snntorchs_leaky_update_exactly(task, options, digits) -> None:
    """SpikingNet steps the neurons itself (issue 14): the same scores and the same gradients,
    bit for bit, as calling each snntorch Leaky neuron as a module."""
    data = digits if task == "digits" else Fsdd().load(Fsdd.Params())
    learner = make(SpikingBPTT, data, spec=ModelSpec(hidden=(24, 16)), num_steps=7, threshold=0.5, **options)
    x, y = batch(data)
    inp = learner.train_input(x)
    params = list(learner.model.parameters())
    results = []
    for forward in (lambda: learner.net(inp), lambda: snntorch_loop(learner.net, inp, options["readout"])):
        scores = forward()
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(scores, y), params)
        results.append((scores, grads))
    (mine, my_grads), (theirs, their_grads) = results
    assert mine.abs().sum() > 0 and torch.equal(mine, theirs)
    assert all(torch.equal(a, b) for a, b in zip(my_grads, their_grads))
    if options.get("learn_beta"):
        assert any(p.dim() == 0 and g.abs() > 0 for p, g in zip(params, my_grads))  # beta learns


def test_networks_own_and_reset_only_their_state(digits) -> None:
    a, b = make(SpikingBPTT, digits, seed=0), make(SpikingBPTT, digits, seed=1)
    alone = make(SpikingBPTT, digits, seed=0)
    neurons_a = [m for m in a.model.modules() if isinstance(m, snn.Leaky)]
    assert neurons_a and not any(n is m for n in neurons_a for m in snn.SpikingNeuron.instances)
    marker = torch.full((2, 32), 0.5)
    neurons_a[0].mem = marker
    b.net.reset()
    snn.Leaky.reset_hidden()  # snntorch's global reset cannot reach these networks
    assert neurons_a[0].mem is marker
    for i in range(4):  # interleaved training of a and b = training a alone
        x, y = batch(digits, start=64 * i)
        a.train_step(x, y)
        b.train_step(x.flip(0), y.flip(0))
        alone.train_step(x, y)
    assert torch.equal(a.predict(digits.test.x), alone.predict(digits.test.x))


@pytest.mark.parametrize("cls", [SpikingBPTT, SpikingDFA])
def test_true_gradient_is_bptt_on_the_same_spikes_and_changes_nothing(cls, digits) -> None:
    learner = make(cls, digits, encoding="rate", num_steps=6, readout="membrane")
    x, y = batch(digits)
    before = {k: v.clone() for k, v in learner.state_dict()["model"].items()}
    reference = learner.true_gradient(x, y)
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict()["model"].items())
    learner.train_step(x, y)
    signal = learner.update_signal()
    assert list(reference) == [n for n, _ in weight_layers(learner.model)]
    if cls is SpikingBPTT:  # the same spike draws: exactly the step's gradient
        assert all(torch.allclose(signal[n], reference[n], atol=1e-6) for n in reference)
    else:  # e-prop's output layer with a membrane readout is exact; the hidden layer is not
        assert torch.allclose(signal["out"], reference["out"], atol=1e-5)
        assert not torch.allclose(signal["fc1"], reference["fc1"], atol=1e-5)


@pytest.mark.parametrize(
    "task, options",
    [
        ("digits", {"encoding": "direct", "readout": "membrane"}),
        ("digits", {"encoding": "rate", "readout": "membrane"}),
        ("digits", {"encoding": "latency", "readout": "membrane"}),
        ("digits", {"encoding": "direct", "readout": "spikes"}),
        ("fsdd", {"encoding": "direct", "readout": "membrane"}),
    ],
)
def test_eprop_with_feedback_set_to_w_out_transposed_is_bptt(task, options, digits) -> None:
    """Bellec et al. (2020): with one hidden layer and B = W_out^T, e-prop's update (filtered
    eligibility trace, 1/T of the mean-membrane readout) is the BPTT gradient, to float round-off."""
    data = digits if task == "digits" else Fsdd().load(Fsdd.Params())
    learner = make(SpikingDFA, data, spec=ModelSpec(hidden=(48,)), num_steps=10, **options)
    x, y = batch(data)
    learner.feedback["fc1"] = learner.model.out.weight.detach().T.clone()
    reference = learner.true_gradient(x, y)  # BPTT on the spikes the step will see
    biases = None
    if options["encoding"] == "direct":  # no spike draws: BPTT's bias gradients by plain autograd too
        loss = torch.nn.functional.cross_entropy(learner.net(learner.train_input(x)), y)
        biases = dict(zip(("fc1", "out"), torch.autograd.grad(loss, [learner.model.fc1.bias, learner.model.out.bias])))
        learner.optimizer.zero_grad()
    learner.train_step(x, y)
    signal = learner.update_signal()
    for layer in ("fc1", "out"):
        cos = torch.nn.functional.cosine_similarity(signal[layer].flatten(), reference[layer].flatten(), dim=0)
        assert float(cos) == pytest.approx(1.0, abs=1e-6), layer
        torch.testing.assert_close(signal[layer], reference[layer], rtol=1e-4, atol=1e-7)
        if biases is not None:
            torch.testing.assert_close(getattr(learner.model, layer).bias.grad, biases[layer], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["snn_bptt", "snn_dfa"])
def test_learns_digits_through_the_runner_and_records_spiking_metrics(name) -> None:
    spec = RunSpec(
        learner=name,
        label=name,
        params={"lr": 0.002, "readout": "membrane"},
        task="digits",
        task_label="digits",
        task_params={},
        model={"hidden": [128]},
        budget={"epochs": 3},
        schedule={"eval_every": 3, "health_every": 10},
        seed_index=0,
        study_seed=0,
    )
    result = run(spec, learner_registry(), task_registry(), CPU)
    assert result.summary["test_accuracy"] > 0.85  # chance is 0.1
    final = {(r["metric"], r["layer"]) for r in result.rows if r["epoch"] == 3 and r["split"] == "test"}
    for metric in ("firing_rate", "silent_fraction", "synops_dense", "synops_effective"):
        assert (metric, "fc1") in final
    for metric in (
        "activation_sparsity",
        "synops_per_sample",
        "synops_dense_per_sample",
        "macs_per_sample",
        "acs_per_sample",
        "energy_per_sample_j",
    ):
        assert (metric, "") in final
    assert any(r["metric"] == "grad_alignment" for r in result.rows)


@pytest.mark.parametrize("cls", [SpikingBPTT, SpikingDFA])
def test_cnn_and_speech(cls, digits) -> None:
    cnn = make(cls, digits, spec=ModelSpec(arch="cnn", channels=(4,), hidden=(16,)), num_steps=4, readout="spikes")
    x, y = batch(digits, n=16)
    assert cnn.train_step(x, y).forward_samples == 16
    # 3x3 taps inside the 8x8 image (padding not counted): 36 interior x 9 + 24 edge x 6 + 4 corner x 4
    assert cnn.predict(x).shape == (16, 10) and cnn.inference_cost(x)["conv1"].dense == (36 * 9 + 24 * 6 + 4 * 4) * 4
    speech = Fsdd().load(Fsdd.Params())
    learner = make(cls, speech)
    learner.train_step(speech.train.x[:16], speech.train.y[:16])
    assert learner.inference_cost(speech.test.x[:8])["fc1"].dense == 20 * 13 * 32  # one MFCC frame per step


def test_bad_options_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"beta = 1\.5"):
        SpikingParams(beta=1.5)
    with pytest.raises(ValueError, match="num_steps = 0"):
        SpikingParams(num_steps=0)
    with pytest.raises(ValueError, match="learn_beta"):
        SpikingDFAParams(learn_beta=True)
    speech = Fsdd().load(Fsdd.Params())
    with pytest.raises(ValueError, match="encoding = 'rate'"):
        make(SpikingBPTT, speech, encoding="rate")


@pytest.mark.parametrize(
    "options",
    [
        {"learn_beta": True, "surrogate": "atan", "surrogate_slope": 3.0, "readout": "spikes"},
        {"encoding": "latency", "num_steps": 12, "surrogate": "sigmoid", "threshold": 0.5},
    ],
)
def test_neuron_and_coding_options_train(options, digits) -> None:
    learner = make(SpikingBPTT, digits, **options)
    beta_before = learner.model.act_fc1.beta.detach().clone()
    losses = [learner.train_step(*batch(digits, start=0)).loss for _ in range(15)]
    assert losses[-1] < losses[0]  # it fits a fixed batch
    at_threshold = surrogate_derivative(learner.model.act_fc1, torch.tensor([options.get("threshold", 1.0)]))
    assert float(at_threshold) == pytest.approx(1.5 if options["surrogate"] == "atan" else 25 / 4)  # alpha/2, k/4
    changed = not torch.equal(learner.model.act_fc1.beta.detach(), beta_before)
    assert changed == options.get("learn_beta", False)


def test_linear_spiking_model_has_no_firing_rows_but_a_cost(digits) -> None:
    learner = make(SpikingDFA, digits, spec=ModelSpec(hidden=()))
    learner.train_step(*batch(digits))
    rows = learner.evaluation_metrics(digits.test.x[:16])
    assert {m for m, _, _ in rows} == {"synops_dense", "synops_effective"}
