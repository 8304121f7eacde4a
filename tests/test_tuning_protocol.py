"""Tuning that isolates tuning (issue 30): several seeds per trial, repeated studies, pruned trials,
the tuning cost, edge flags, the hand-picked arm, and a killed study with all of these resumed exactly."""

from __future__ import annotations

import io
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

import bpbench
from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.plan.tuning import Range, edge
from bpbench.experiments.report.tuning_cost import edge_flags, tuning_cost
from bpbench.experiments.run.runner import run
from bpbench.experiments.schedule.tuning import Group, distributions
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.selection import val_score
from test_tuning import _claimed_unstored, _driver, _storage, metas, tuned_toml, two_drivers

PROTOCOL = 'seeds_per_trial = 2\nrepeats = 2\npruner = "successive_halving"\ncompare_default = true\n'
LR = Range(1e-4, 3e-2, log=True)


def drawn(toml: Path, label: str, repeat: int, n: int) -> list[list]:
    """The runs (one per tuning seed) of the first ``n`` trials of ``label``'s repeat, drawn in memory."""
    plan = load_study(toml, None, learner_registry(), task_registry())
    base = next(s for s in plan.runs if s.label == label)
    space = plan.tuning.spaces[label]
    group = Group(base, space, plan.tuning, learner_registry(), optuna.storages.InMemoryStorage(), repeat)
    optuna.create_study(study_name=group.name, storage=group.storage, direction="maximize")
    return [group.trial_specs(group.study(k).ask(fixed_distributions=distributions(space))) for k in range(n)]


def fake_run(store: RunStore, spec, val: float, pruned: bool = False, flops: float = 1e6) -> None:
    """A stored run whose validation accuracy is ``val`` at its last epoch (1 when ``pruned``, else 2)."""
    last = 1 if pruned else 2
    rows = [
        {"run_id": spec.run_id, "epoch": e, "step": 10 * e, "split": s, "metric": "accuracy", "layer": "", "value": v}
        for e in range(1, last + 1)
        for s, v in (("val", val if e == last else 0.1), ("test", 0.5))
    ]  # training FLOPs as the runner records them: a train row per evaluation (the run's measure: the last)
    rows += [{**rows[-1], "epoch": e, "split": "train", "metric": "train_flops", "value": flops} for e in (1, last)]
    summary = {"test_accuracy": 0.5, "stopped_by": "pruned" if pruned else "epochs", "epochs_completed": last}
    meta = {"run_id": spec.run_id, "seed": spec.seed, "spec": spec.to_json(), "status": "ok", "error": None}
    store.write(spec.run_id, rows, {**meta, "summary": {**summary, "train_flops": flops}, "wall_seconds": 0.5})


# per repeat, per trial: the validation scores of its seeds, or ("pruned", score of its probe)
SCORES = {
    0: [(0.60, 0.62), (0.95, 0.45), ("pruned", 0.99), (0.72, 0.70)],  # mean argmax: trial 3 (not 1, not 2)
    1: [(0.80, 0.80), (0.50, 0.50), (0.79, 0.79), ("pruned", 0.98)],  # trial 0
}


def test_choice_is_argmax_of_mean_over_seeds_among_unpruned_trials(tmp_path: Path) -> None:
    """Stored trials whose best single seed and best pruned probe disagree with the best mean: each repeat's
    final runs use the best mean among unpruned trials; the table shows each repeat's choice, the tuning
    cost (counted exactly), edge flags, and the hand-picked rows with the tuning gain."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(tuned_toml(learners=("backprop", "fa"), final_seeds=1, epochs=2, extra=PROTOCOL))
    store = RunStore(out)
    for label in ("backprop", "fa"):
        for repeat, trials in SCORES.items():
            for specs, scores in zip(drawn(study, label, repeat, 4), trials):
                if scores[0] == "pruned":
                    fake_run(store, specs[0], scores[1], pruned=True)
                else:
                    for spec, val in zip(specs, scores):
                        fake_run(store, spec, val)
    results = bpbench.run(study, out=out, executor="inline", progress=False)
    assert len(results.ran) == 2 * 2 + 2 * 2  # finals (2 learners x 2 repeats x 1 seed) + hand-picked (seeds 0, 1)
    found = metas(out)
    finals = [m["spec"] for m in found if m["spec"]["tuning"]["phase"] == "final"]
    expected = {0: 3, 1: 0}
    for label in ("backprop", "fa"):
        for repeat, trial in expected.items():
            chosen = drawn(study, label, repeat, 4)[trial][0]
            mine = [s for s in finals if s["label"] == label and s["tuning"]["repeat"] == repeat]
            assert [(s["tuning"]["trial"], s["params"]["lr"]) for s in mine] == [(trial, chosen.params["lr"])]
            assert [s["seed_index"] for s in mine] == [repeat]  # final seeds: repeat r's own, below the tuning ones
    tuning_seeds = {m["spec"]["seed_index"] for m in found if m["spec"]["tuning"]["phase"] == "tuning"}
    assert tuning_seeds == {10000, 10001, 10100, 10101}
    assert not tuning_seeds & {s["seed_index"] for s in finals}
    states = {}
    for name in optuna.get_all_study_names(_storage(out)):
        trials = optuna.load_study(study_name=name, storage=_storage(out)).trials
        states[name] = [(t.state.name, None if t.value is None else round(t.value, 6)) for t in trials]
    assert sorted(states.values()) == sorted(  # a pruned trial stored already: no intermediate value told
        [[("COMPLETE", 0.61), ("COMPLETE", 0.7), ("PRUNED", None), ("COMPLETE", 0.71)]] * 2
        + [[("COMPLETE", 0.8), ("COMPLETE", 0.5), ("COMPLETE", 0.79), ("PRUNED", None)]] * 2
    )
    table = results.tuning
    assert len(table) == 16 and table["pruned"].sum() == 4
    assert list(table[table["learner"] == "fa"]["status"])[2] == "pruned at epoch 1"
    cost = tuning_cost(table).set_index("learner")
    assert cost.loc["fa", ["trials", "seeds_per_trial", "runs"]].tolist() == [8, 2, 14]
    assert cost.loc["fa", "train_flops"] == pytest.approx(14e6) and cost.loc["fa", "wall_seconds"] == pytest.approx(7)
    assert cost.loc["fa", "pruned"] == pytest.approx(0.25)
    text = results.table()
    lr = {r: drawn(study, "fa", r, 4)[t][0].params["lr"] for r, t in expected.items()}
    row = next(line for line in text.splitlines() if line.startswith("fa (r0 "))
    for r in (0, 1):
        mark = "†edge" if edge(LR, lr[r]) else ""
        assert f"r{r} lr={lr[r]:g}{mark}" in row, row
    assert "8×2, 0.014 GFLOPs, 7 s, 25% pruned" in row and re.search(r"[+-]\d\.\d{3} \(", row), row
    assert re.search(r"^fa \(hand-picked\)\s+digits", text, re.MULTILINE)
    assert "Tuning cost (every repeat" in text and "fa on digits 8×2" in text
    csv = pd.read_csv(io.StringIO(results.table("csv")), dtype={"config": str})
    tuned, hand = csv[csv["sampler"] != "hand-picked"].set_index("learner"), csv[csv["sampler"] == "hand-picked"]
    spread = float(re.search(r"spread (\d\.\d+)", str(tuned.loc["fa", "shown:repeats"]))[1])
    assert tuned.loc["fa", "repeat_spread"] == pytest.approx(spread, abs=5e-4)
    gain = tuned.loc["fa", "test_acc_mean"] - hand.set_index("learner").loc["fa", "test_acc_mean"]
    assert tuned.loc["fa", "tuning_gain"] == pytest.approx(gain)


def test_edge_flags_on_log_and_integer_ranges() -> None:
    """Within 5% of a range's end (log scale for a log range) is an edge; inside it is not. The table
    marks the value at the edge, not the configuration's last one."""
    from bpbench.experiments.report.tuning import mark_edges

    assert mark_edges("lr=0.0258, threshold=306", ["lr high"]) == "lr=0.0258†edge, threshold=306"
    assert mark_edges("lr=0.01, beta=0.52", ["beta low"]) == "lr=0.01, beta=0.52†edge"
    assert mark_edges("lr=0.01", []) == "lr=0.01" and mark_edges("", ["lr high"]) == "†edge"
    assert edge(LR, 1e-4 * 300**0.04) == "low" and edge(LR, 2.8e-2) == "high" and edge(LR, 1.7e-3) is None
    assert edge(LR, 1e-4 * 300**0.06) is None  # 6% along the log scale (linear: 0.04%)
    tangents = Range(1, 16, integer=True)
    assert [edge(tangents, v) for v in (1, 2, 8, 15, 16)] == ["low", None, None, None, "high"]
    table = pd.DataFrame(
        {
            "learner": ["fwd_grad", "fwd_grad", "pc"],
            "task": ["digits"] * 3,
            "repeat": [0, 1, 0],
            "chosen": [True, True, True],
            "options": [{"lr": 1e-3, "tangents": 16}, {"lr": 1e-4, "tangents": 8}, {"gamma": 0.1}],
        }
    )
    study = {
        "learners": {
            "fwd_grad": {
                "search": {"lr": {"low": 1e-4, "high": 3e-2, "log": True}, "tangents": {"low": 1, "high": 16}}
            },
            "pc": {"search": {"gamma": [0.1, 0.2]}},  # a choice has no edge
        }
    }
    assert edge_flags(table, study) == {
        ("fwd_grad", "digits", 0): ["tangents high"],
        ("fwd_grad", "digits", 1): ["lr low"],
        ("pc", "digits", 0): [],
    }


def test_trials_scale_with_searched_dimensions(tmp_path: Path) -> None:
    """trials per searched dimension by default; trials_scale = "fixed": the same for every learner."""
    study = tmp_path / "t.toml"
    pc = "[learners.pc]\n[learners.pc.search]\nlr = { low = 1e-4, high = 3e-2, log = true }\ngamma = [0.1, 0.2]\n"
    for extra, want in (("", {"backprop": 3, "pc": 6}), ('trials_scale = "fixed"\n', {"backprop": 3, "pc": 3})):
        study.write_text(tuned_toml(trials=3, learners=("backprop",), extra=extra) + pc)
        plan = load_study(study, None, learner_registry(), task_registry()).tuning
        assert {label: plan.trials_for(space) for label, space in plan.spaces.items()} == want
    study.write_text(tuned_toml(learners=("backprop",)).replace("trials = 4\n", "") + pc)
    plan = load_study(study, None, learner_registry(), task_registry()).tuning
    assert {label: plan.trials_for(space) for label, space in plan.spaces.items()} == {"backprop": 8, "pc": 16}


def test_flops_budget_draws_trials_while_it_lasts(tmp_path: Path) -> None:
    """flops = 250 with trials of 100 training FLOPs each: three trials are drawn (the third crosses the
    budget), then the best of them is retrained."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(
        tuned_toml(learners=("backprop",), final_seeds=1, extra="flops = 250\n").replace("trials = 4\n", "")
    )
    store = RunStore(out)
    specs = drawn(study, "backprop", 0, 5)
    for k, runs in enumerate(specs):
        fake_run(store, runs[0], [0.5, 0.9, 0.7, 0.99, 0.99][k], flops=100)
    results = bpbench.run(study, out=out, executor="inline", progress=False)
    name = optuna.get_all_study_names(_storage(out))[0]
    assert len(optuna.load_study(study_name=name, storage=_storage(out)).trials) == 3
    final = [m["spec"] for m in metas(out) if m["spec"]["tuning"]["phase"] == "final"]
    assert len(results.ran) == 1 and final[0]["params"]["lr"] == specs[1][0].params["lr"]


def test_degenerate_range_warns_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A range holding fewer than 3 values (an int range 1..2) is a warning before the run (and in --dry-run)."""
    study = tmp_path / "t.toml"
    study.write_text(
        tuned_toml(trials=1, learners=(), final_seeds=1)
        + "[learners.fwd_grad]\nperturb = 'activity'\n[learners.fwd_grad.search]\ntangents = { low = 1, high = 2 }\n"
    )
    want = "learners.fwd_grad.search.tangents holds only 2 distinct value(s)"
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert want in capsys.readouterr().out
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--executor", "inline"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(f"bpbench: warning: {want}"), err


def test_runner_stops_a_run_when_the_epoch_hook_says_so(tmp_path: Path) -> None:
    """The runner's per-epoch hook sees each evaluated epoch's accuracies; True ends the run there, pruned."""
    study = tmp_path / "t.toml"
    study.write_text(tuned_toml(learners=("backprop",), epochs=3))
    spec = drawn(study, "backprop", 0, 1)[0][0]
    seen: list[tuple[int, float]] = []

    def hook(epoch: int, accuracy: dict[str, float]) -> bool:
        seen.append((epoch, accuracy["val"]))
        return epoch == 2

    result = run(spec, learner_registry(), task_registry(), torch.device("cpu"), on_evaluated=hook)
    assert result.summary["stopped_by"] == "pruned" and result.summary["epochs_completed"] == 2
    val = {r["epoch"]: r["value"] for r in result.rows if r["split"] == "val" and r["metric"] == "accuracy"}
    assert [e for e, _ in seen] == [1, 2] and seen == [(e, val[e]) for e in (1, 2)] and max(val) == 2
    full = run(spec, learner_registry(), task_registry(), torch.device("cpu"), on_evaluated=lambda e, a: True)
    assert full.summary["stopped_by"] == "pruned" and full.summary["epochs_completed"] == 1


def check_exact(out: Path, results: Any, trials: int, seeds: int, label: str = "backprop") -> None:
    """Every trial counted once: per study ``trials`` trials, each PRUNED with only its probe stored, or
    COMPLETE with its ``seeds`` runs stored and told their mean validation score; each repeat's final runs
    use the best mean among the completed trials; final seeds never among tuning seeds."""
    store = RunStore(out)
    found = metas(out)
    runs: dict[tuple[int, int], list[dict]] = {}
    for m in found:
        tag = m["spec"]["tuning"]
        if tag["phase"] == "tuning":
            runs.setdefault((tag["repeat"], tag["trial"]), []).append(m)
    pruned = 0
    for name in optuna.get_all_study_names(_storage(out)):
        if not name.startswith(f"{label}@"):
            continue
        repeat = int(re.search(r"#r(\d+)#", name).group(1))
        study = optuna.load_study(study_name=name, storage=_storage(out))
        counted = [t for t in study.trials if t.params]  # a trial without params: its driver died inside ask
        assert len(counted) == trials and all(t.state.name in ("COMPLETE", "PRUNED") for t in counted)
        for t in counted:
            mine = runs[(repeat, t.number)]
            if t.state.name == "PRUNED":
                pruned += 1
                assert [m["summary"]["stopped_by"] for m in mine] == ["pruned"]
            else:
                assert len(mine) == seeds and all(m["summary"]["stopped_by"] == "epochs" for m in mine)
                mean = np.mean([val_score(store, m["run_id"], "val_accuracy") for m in mine])
                assert t.value == pytest.approx(mean)
        best = max((t for t in counted if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
        finals = [m["spec"] for m in found if m["spec"]["tuning"]["phase"] == "final" and m["spec"]["label"] == label]
        assert {s["tuning"]["trial"] for s in finals if s["tuning"]["repeat"] == repeat} == {best.number}
    assert pruned >= 1  # the pruner stopped something: the exactness above covered pruned trials
    tuning_seeds = {m["spec"]["seed_index"] for m in found if m["spec"]["tuning"]["phase"] == "tuning"}
    assert not tuning_seeds & {m["spec"]["seed_index"] for m in found if m["spec"]["tuning"]["phase"] != "tuning"}
    assert len(results.tuning[results.tuning["learner"] == label]) == 2 * trials


def test_killed_pruned_repeated_study_resumes_exactly(tmp_path: Path) -> None:
    """seeds_per_trial = 2, repeats = 2, successive halving, compare_default: SIGKILL the driver inside a
    run, rerun: no stored run repeats, every trial is counted once, and the table shows each repeat's
    result, the tuning cost and the hand-picked row."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(tuned_toml(learners=("backprop",), final_seeds=1, epochs=2, extra=PROTOCOL))
    driver = _driver(study, out, "--executor", "inline")
    deadline = time.monotonic() + 240
    while not (len(metas(out)) >= 3 and _claimed_unstored(out)):
        assert driver.poll() is None and time.monotonic() < deadline, "driver ended before it was killed"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {m["run_id"]: m["start_time"] for m in metas(out)}
    results = bpbench.run(study, out=out, executor="inline", progress=False)
    after = metas(out)
    assert {m["run_id"]: m["start_time"] for m in after if m["run_id"] in before} == before  # none re-run
    assert len(results.ran) == len(after) - len(before)
    check_exact(out, results, trials=4, seeds=2)
    text = results.table()
    row = next(line for line in text.splitlines() if line.startswith("backprop (") and "hand-picked" not in line)
    assert re.search(r"\d\.\d{3} / \d\.\d{3} \(spread \d\.\d{3}\)", row) and re.search(r"8×2, [\d.]+ GFLOPs", row)
    assert "backprop (hand-picked)" in text


@pytest.mark.slow
def test_two_drivers_share_a_pruned_repeated_study(tmp_path: Path) -> None:
    """Two drivers on one folder with seeds_per_trial, repeats and a pruner: every run once, every trial once."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(tuned_toml(learners=("backprop",), final_seeds=1, epochs=2, extra=PROTOCOL))
    executed = two_drivers(study, out)
    found = metas(out)
    assert sum(executed) == len(found) and all(m["status"] == "ok" for m in found), executed
    check_exact(out, bpbench.load(out), trials=4, seeds=2)
    assert not math.isnan(bpbench.load(out).tuning["val_score"].max())


@pytest.mark.parametrize("pruner", ["median", "hyperband", "successive_halving"])
def test_every_pruner_hears_each_evaluated_epoch(tmp_path: Path, pruner: str) -> None:
    """Each trial's probe reports its validation accuracy at every evaluated epoch before the last to
    its Optuna trial (the values stored in its run); a pruned trial is one run stopped there."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    extra = f'pruner = "{pruner}"\n'
    study.write_text(tuned_toml(trials=3, learners=("backprop",), final_seeds=1, epochs=3, extra=extra))
    bpbench.run(study, out=out, executor="inline", progress=False)
    store = RunStore(out)
    probes = {m["spec"]["tuning"]["trial"]: m for m in metas(out) if m["spec"]["tuning"]["phase"] == "tuning"}
    trials = optuna.load_study(study_name=optuna.get_all_study_names(_storage(out))[0], storage=_storage(out)).trials
    assert len(trials) == 3 == len(probes)
    for t in trials:
        meta = probes[t.number]
        rows = store.run_metrics(meta["run_id"], ("accuracy",))
        val = rows[(rows["split"] == "val") & (rows["epoch"] >= 1)].set_index("epoch")["value"]
        last = meta["summary"]["epochs_completed"]
        assert t.intermediate_values == {e: val[e] for e in range(1, min(last, 2) + 1)}
        assert (t.state.name == "PRUNED") == (meta["summary"]["stopped_by"] == "pruned")


def test_a_pruned_trial_is_never_chosen_whatever_its_value(tmp_path: Path) -> None:
    """A pruned trial carries its probe's last reported value (Optuna's tell): above every completed
    trial's here, and still not the choice; a failed trial neither."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = tmp_path / "t.toml"
    study.write_text(tuned_toml(learners=("backprop",), extra=PROTOCOL))
    plan = load_study(study, None, learner_registry(), task_registry())
    group = Group(plan.runs[0], plan.tuning.spaces["backprop"], plan.tuning, learner_registry(), None)
    dist = {"lr": FloatDistribution(1e-4, 3e-2, log=True)}
    made = [
        create_trial(params={"lr": 1e-3}, distributions=dist, state=TrialState.PRUNED, value=0.99),
        create_trial(params={"lr": 2e-3}, distributions=dist, state=TrialState.COMPLETE, value=0.70),
        create_trial(params={"lr": 3e-3}, distributions=dist, state=TrialState.FAIL),
        create_trial(params={"lr": 4e-3}, distributions=dist, state=TrialState.COMPLETE, value=0.71),
    ]
    for number, trial in enumerate(made):
        trial.number = number
    assert group.best(made).number == 3
    assert group.best(made[:1]) is None
