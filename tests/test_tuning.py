"""Tuned studies (issue 23): the protocol's run counts and seeds, selection on validation only, resume
after a kill, two drivers on one folder, bad search spaces refused before any run, and EVP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

import bpbench
from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.plan.tuning import TUNING_SEED_BASE
from bpbench.experiments.report.tuning import expected_max
from bpbench.experiments.schedule.tuning import Group, distributions
from bpbench.experiments.store.run_store import RunStore

REPO = Path(__file__).resolve().parent.parent
LR = "{ low = 1e-4, high = 3e-2, log = true }"


def tuned_toml(
    trials: int = 4,
    final_seeds: int = 2,
    learners: tuple[str, ...] = ("backprop", "fa"),
    epochs: int = 1,
    extra: str = "",
) -> str:
    head = (
        f'tasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = {epochs}\n'
        f'[tuning]\ntrials = {trials}\nsampler = "qmc"\nfinal_seeds = {final_seeds}\n{extra}'
    )
    return head + "".join(f"[learners.{name}]\n[learners.{name}.search]\nlr = {LR}\n" for name in learners)


def metas(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/meta.json"))]


def planned_runs(toml: Path, label: str, repeat: int = 0) -> list[list]:
    """Per trial of ``repeat`` the runs (one per tuning seed) a run draws for ``label``, drawn again in
    memory (as --dry-run does)."""
    plan = load_study(toml, None, learner_registry(), task_registry())
    base = next(s for s in plan.runs if s.label == label)
    space = plan.tuning.spaces[label]
    group = Group(base, space, plan.tuning, learner_registry(), optuna.storages.InMemoryStorage(), repeat)
    optuna.create_study(study_name=group.name, storage=group.storage, direction="maximize")
    return [
        group.trial_specs(group.study(n).ask(fixed_distributions=distributions(group.space)))
        for n in range(plan.tuning.trials_for(space))
    ]


def planned_trials(toml: Path, label: str) -> list:
    """The run of each trial (one tuning seed) a run draws for ``label``."""
    return [specs[0] for specs in planned_runs(toml, label)]


def test_protocol_runs_trials_then_final_seeds(tmp_path: Path) -> None:
    """2 learners x 4 trials x 2 final seeds: 4 tuning + 2 final runs each; seeds disjoint; the final
    configuration is the validation argmax; the table shows the chosen value, trials and sampler."""
    study = tmp_path / "t.toml"
    study.write_text(tuned_toml())
    results = bpbench.run(study, out=tmp_path / "out", executor="inline", progress=False)
    by_label: dict[str, dict[str, list[dict]]] = {}
    for meta in metas(tmp_path / "out"):
        assert meta["status"] == "ok", meta.get("error")
        tag = meta["spec"]["tuning"]
        by_label.setdefault(meta["spec"]["label"], {}).setdefault(tag["phase"], []).append(meta["spec"])
    trials = results.tuning
    for label in ("backprop", "fa"):
        tuning, final = by_label[label]["tuning"], by_label[label]["final"]
        assert len(tuning) == 4 and len(final) == 2
        assert sorted(s["seed_index"] for s in tuning) == [TUNING_SEED_BASE] * 4  # one repeat, one seed
        assert sorted(s["seed_index"] for s in final) == [0, 1]
        mine = trials[trials["learner"] == label]
        best = mine.loc[mine["val_score"].idxmax()]
        assert {s["params"]["lr"] for s in final} == {best["options"]["lr"]}
        assert {s["tuning"]["trial"] for s in final} == {int(best["trial"])}
        assert mine["chosen"].sum() == 1 and bool(mine.loc[best.name, "chosen"])
        assert sorted(mine["rank"]) == sorted(mine["val_score"].rank(ascending=False, method="min"))
    text = results.table()
    for label in ("backprop", "fa"):
        chosen = trials[(trials["learner"] == label) & trials["chosen"]]["config"].iloc[0]
        line = next(row for row in text.splitlines() if row.startswith(f"{label} ("))
        assert f"({chosen})" in line and re.search(
            r"\s2\s+[\d.]+\s+4×1, [\d.]+ GFLOPs, [\d.]+ s, 0% pruned\s+qmc\s", line
        )
    assert len([r for r in text.splitlines() if r.startswith(("backprop (", "fa ("))]) == 2  # finals only
    assert "trial" in results.table(tuning=True) and len(results.table(tuning=True).splitlines()) == 2 + 8
    # fa is compared with backprop's final runs, whatever lr each chose (never "n/a: no matching configuration")
    from bpbench.experiments.report.tuning import tuned_summary

    summary = tuned_summary(results.run_table(), "backprop", "raw").rows.set_index("learner")
    fa_final = [
        m["measures"]["values"]["test_accuracy"]
        for m in results.store.iter_metas()
        if m["spec"]["label"] == "fa" and m["spec"]["tuning"]["phase"] == "final"
    ]
    bp_final = [
        m["measures"]["values"]["test_accuracy"]
        for m in results.store.iter_metas()
        if m["spec"]["label"] == "backprop" and m["spec"]["tuning"]["phase"] == "final"
    ]
    assert summary.loc["fa", "diff_mean"] == pytest.approx(np.mean(fa_final) - np.mean(bp_final))
    assert summary.loc["fa", "reference"].startswith("backprop")


def _fake_run(store: RunStore, spec, val: float, test: float) -> None:
    rows = [
        {
            "run_id": spec.run_id,
            "epoch": 1,
            "step": 10,
            "split": split,
            "metric": "accuracy",
            "layer": "",
            "value": value,
        }
        for split, value in (("val", val), ("test", test), ("train", 0.5))
    ]
    meta = {
        "run_id": spec.run_id,
        "seed": spec.seed,
        "spec": spec.to_json(),
        "status": "ok",
        "error": None,
        "summary": {"test_accuracy": test, "stopped_by": "epochs"},
    }
    store.write(spec.run_id, rows, meta)


def test_selection_reads_validation_never_test(tmp_path: Path) -> None:
    """Trials stored with validation and test orders that disagree: the final runs use the validation
    argmax, not the test argmax."""
    study = tmp_path / "t.toml"
    study.write_text(tuned_toml(learners=("backprop",), final_seeds=1))
    specs = planned_trials(study, "backprop")
    store = RunStore(tmp_path / "out")
    scores = [(0.50, 0.90), (0.80, 0.40), (0.60, 0.95), (0.30, 0.20)]  # val best: trial 1; test best: trial 2
    for spec, (val, test) in zip(specs, scores):
        _fake_run(store, spec, val, test)
    results = bpbench.run(study, out=tmp_path / "out", executor="inline", progress=False)
    assert len(results.ran) == 1  # the trials were stored already: only the final run ran
    final = [m["spec"] for m in metas(tmp_path / "out") if m["spec"]["tuning"]["phase"] == "final"]
    assert [s["params"]["lr"] for s in final] == [specs[1].params["lr"]] != [specs[2].params["lr"]]
    assert final[0]["tuning"]["trial"] == 1


def _driver(study: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bpbench", "run", str(study), "--out", str(out), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_killed_driver_resumes_without_repeating_trials(tmp_path: Path) -> None:
    """SIGKILL the driver once a trial is stored; the rerun keeps them, draws the same
    configurations, runs the rest once and chooses the validation argmax."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(tuned_toml(learners=("backprop",), final_seeds=1))
    driver = _driver(study, out, "--executor", "inline")
    deadline = time.monotonic() + 240
    while not (metas(out) and _claimed_unstored(out)):  # inside a run: after its ask, before its tell
        assert driver.poll() is None and time.monotonic() < deadline, "driver ended before it was killed"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = {m["run_id"]: m["start_time"] for m in metas(out)}
    assert 1 <= len(before) < 5
    results = bpbench.run(study, out=out, executor="inline", progress=False)
    after = metas(out)
    assert {m["run_id"]: m["start_time"] for m in after if m["run_id"] in before} == before  # none re-run
    assert len(results.ran) == 5 - len(before)
    tuning = [m["spec"] for m in after if m["spec"]["tuning"]["phase"] == "tuning"]
    planned = {s.run_id: s.tuning["trial"] for s in planned_trials(study, "backprop")}
    assert {m["run_id"]: m["spec"]["tuning"]["trial"] for m in after if m["spec"] in tuning} == planned
    trials = results.tuning
    best = trials.loc[trials["val_score"].idxmax()]
    final = [m["spec"] for m in after if m["spec"]["tuning"]["phase"] == "final"]
    assert len(final) == 1 and final[0]["params"]["lr"] == best["options"]["lr"]
    journal = optuna.load_study(study_name=optuna.get_all_study_names(_storage(out))[0], storage=_storage(out))
    assert [t.state.name for t in journal.trials] == ["COMPLETE"] * 4


def _claimed_unstored(out: Path) -> bool:
    """Whether a run is claimed (started) and not yet stored."""
    stored = {p.parent.name for p in out.glob("runs/*/meta.json")}
    return any(claim.name not in stored for claim in (out / "claims").glob("*") if any(claim.iterdir()))


def test_trial_of_a_driver_killed_inside_its_ask_is_discarded(tmp_path: Path) -> None:
    """A trial asked without its configuration (the driver died inside Optuna's ask) never ran: the next
    driver fails it, does not count it, and draws the study's 4 trials besides."""
    from bpbench.experiments.schedule.tuning import journal

    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(tuned_toml(learners=("backprop",), final_seeds=1))
    plan = load_study(study, None, learner_registry(), task_registry())
    group = Group(plan.runs[0], plan.tuning.spaces["backprop"], plan.tuning, learner_registry(), journal(out))
    optuna.create_study(study_name=group.name, storage=group.storage, direction="maximize").ask()  # no params
    results = bpbench.run(study, out=out, executor="inline", progress=False)
    assert len(results.ran) == 5 and len(results.tuning) == 4
    states = [
        (t.state.name, bool(t.params)) for t in optuna.load_study(study_name=group.name, storage=_storage(out)).trials
    ]
    assert states == [("FAIL", False)] + [("COMPLETE", True)] * 4


def _storage(out: Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(out / "tuning" / "journal.log")))


def two_drivers(study: Path, out: Path) -> list[int]:
    """Run ``study`` into ``out`` with two drivers at once (inline, process); the runs each executed."""
    drivers = [
        _driver(study, out, "--executor", "inline"),
        _driver(study, out, "--executor", "process", "--jobs", "1", "--threads", "1"),
    ]
    executed = []
    for proc in drivers:
        stdout, stderr = proc.communicate(timeout=400)
        assert proc.returncode == 0, stderr
        executed.append(int(re.search(r"^(\d+) run\(s\) in", stdout, re.MULTILINE).group(1)))
    return executed


def test_two_drivers_share_one_tuning_folder(tmp_path: Path) -> None:
    """Two drivers on one folder: every trial asked once and run once, the work split between them."""
    study, out = tmp_path / "t.toml", tmp_path / "out"
    study.write_text(tuned_toml(learners=("backprop", "fa"), final_seeds=1))
    executed = two_drivers(study, out)
    assert sum(executed) == 10, executed  # 2 x (4 trials + 1 final): none twice
    found = metas(out)
    assert len(found) == 10 and all(m["status"] == "ok" for m in found)
    for name in optuna.get_all_study_names(_storage(out)):
        assert len(optuna.load_study(study_name=name, storage=_storage(out)).trials) == 4


BAD = {
    "unknown option": ("[learners.fa.search]\nnot_an_option = [1, 2]\n", "has no option 'not_an_option'"),
    "empty range": ("[learners.fa.search]\nlr = { low = 0.01, high = 0.01 }\n", "empty or inverted range"),
    "inverted range": (
        "[learners.fa.search]\nlr = { low = 0.1, high = 0.01, log = true }\n",
        "empty or inverted range",
    ),
    "option of another learner": (
        "[learners.fa.search]\ngamma = { low = 0.01, high = 0.5 }\n",
        "learner 'fa' has no option 'gamma'",
    ),
    "model option unknown": ("[learners.fa.search.model]\nwidth = [16, 32]\n", "the model has no option 'width'"),
    "empty choice": ("[learners.fa.search]\nbatch_size = []\n", "an empty choice"),
    "wrong type": ("[learners.fa.search]\nbatch_size = [16, 'big']\n", "batch_size[1] = 'big'"),
    "grid larger than trials": (
        "[learners.fa.search]\nbatch_size = [16, 32, 64, 128, 256]\n",
        "a grid of 5 points is more than the 4 trial(s) of tuning.trials = 4",
    ),
    "unknown tuning key": ("", "unknown key 'budget' in tuning"),
    "no seeds per trial": ("", "tuning.seeds_per_trial = 0: expected an integer from 1 to 100"),
    "repeats not a number": ("", "tuning.repeats = 'three': expected an integer from 1 to 100"),
    "unknown pruner": ("", "tuning.pruner = 'asha': allowed: none, median, successive_halving, hyperband"),
    "two budgets": ("", "tuning: both trials and flops given; allowed: one budget, trials or flops"),
    "negative flops": ("", "tuning.flops = -1.0: expected training FLOPs per learner x task (a number > 0)"),
    "compare_default not a bool": ("", "tuning.compare_default = 'yes': expected true or false"),
    "unknown trials scale": ("", "tuning.trials_scale = 'per_option': allowed: per_dimension, fixed"),
}
EXTRA = {
    "unknown tuning key": "budget = 3\n",
    "no seeds per trial": "seeds_per_trial = 0\n",
    "repeats not a number": 'repeats = "three"\n',
    "unknown pruner": 'pruner = "asha"\n',
    "two budgets": "flops = 1e9\n",
    "negative flops": "flops = -1.0\n",
    "compare_default not a bool": 'compare_default = "yes"\n',
    "unknown trials scale": 'trials_scale = "per_option"\n',
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_search_space_is_one_line_exit_2_before_any_run(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snippet, expected = BAD[case]
    sampler = "grid" if case == "grid larger than trials" else "qmc"
    extra = EXTRA.get(case, "")
    trials = "" if case == "negative flops" else "trials = 4\n"
    study = tmp_path / "bad.toml"
    study.write_text(f'tasks = ["digits"]\n[tuning]\n{trials}sampler = "{sampler}"\n{extra}[learners.fa]\n{snippet}')
    code = main(["run", str(study), "--out", str(tmp_path / "out"), "--executor", "inline"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists()  # nothing started
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_study(study, None, learner_registry(), task_registry())


def test_expected_validation_performance_matches_monte_carlo() -> None:
    """EVP of a fixed list of trial scores equals the mean of the best of n draws with replacement,
    and its variance the draws' variance (Dodge et al. 2019)."""
    scores = [0.91, 0.42, 0.88, 0.95, 0.10, 0.93, 0.93, 0.60]
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 8, 20):
        best = rng.choice(scores, size=(200_000, n), replace=True).max(axis=1)
        mean, var = expected_max(scores, n)
        assert abs(mean - best.mean()) < 4 * best.std() / np.sqrt(len(best)), (n, mean, best.mean())
        assert abs(var - best.var()) < 0.03 * best.var() + 1e-6, (n, var, best.var())
    assert expected_max([0.0, 1.0], 1) == (0.5, 0.25) and expected_max([0.0, 1.0], 2)[0] == 0.75
    assert expected_max(scores, 1)[0] == pytest.approx(np.mean(scores))


def test_selection_scores_final_or_best_epoch(tmp_path: Path) -> None:
    """val_accuracy: the last epoch's validation accuracy; best_val_accuracy: the best epoch's, and a final
    run then reports the test accuracy of that epoch."""
    from bpbench.experiments.store.selection import test_at_best_val, val_score

    study = tmp_path / "t.toml"
    study.write_text(tuned_toml(learners=("backprop",)))
    spec = planned_trials(study, "backprop")[0]
    store = RunStore(tmp_path / "out")
    rows = [
        {
            "run_id": spec.run_id,
            "epoch": epoch,
            "step": 10 * epoch,
            "split": split,
            "metric": "accuracy",
            "layer": "",
            "value": value,
        }
        for epoch, val, test in ((1, 0.70, 0.50), (2, 0.60, 0.80))
        for split, value in (("val", val), ("test", test))
    ]
    store.write(spec.run_id, rows, {"run_id": spec.run_id, "spec": spec.to_json(), "status": "ok"})
    assert val_score(store, spec.run_id, "val_accuracy") == 0.60
    assert val_score(store, spec.run_id, "best_val_accuracy") == 0.70
    assert test_at_best_val(store, spec.run_id) == 0.50
