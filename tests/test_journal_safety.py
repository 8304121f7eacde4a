"""The tuning journal is input from someone else (issue 34): checked against the run folders and the
search space, repaired when cut short, never written through a symlink; a killed trial is retried once.
Runs are stored by a fake executor (no training), so each test takes seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.schedule.tuning import run_tuned
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.safe_paths import UnsafePathError
from bpbench.experiments.store.selection import val_score

TOML = (
    'tasks = ["digits"]\n[model]\nhidden = [8]\n[budget]\nepochs = 1\n'
    '[tuning]\ntrials = 3\nsampler = "qmc"\nfinal_seeds = 1\n'
    "[learners.backprop]\n[learners.backprop.search]\nlr = { low = 1e-4, high = 3e-2, log = true }\n"
)
KILLED = "worker process died (exit code -9) while running this run"


class FakeExecutor:
    """Stores each run as finished with validation accuracy 10 x lr (no training); ``kill``: run ids
    whose first ``kill[id]`` attempts are stored as killed workers."""

    jobs = 3

    def __init__(self, kill: dict[str, int] | None = None) -> None:
        self.kill = kill or {}
        self.executed: list[str] = []

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Any) -> list[Any]:
        for spec in specs:
            self.executed.append(spec.run_id)
            killed = self.kill.get(spec.run_id, 0) >= self.executed.count(spec.run_id)
            val = min(1.0, 10 * spec.params["lr"])
            rows = [
                {
                    "run_id": spec.run_id,
                    "epoch": 1,
                    "step": 5,
                    "split": s,
                    "metric": "accuracy",
                    "layer": "",
                    "value": v,
                }
                for s, v in (("val", val), ("test", val), ("train", val))
            ]
            meta = {
                "run_id": spec.run_id,
                "seed": spec.seed,
                "spec": spec.to_json(),
                "status": "failed" if killed else "ok",
                "error": KILLED if killed else None,
                "summary": {"stopped_by": "epochs", "test_accuracy": val},
            }
            store.write(spec.run_id, [] if killed else rows, meta)
        return []


def tune(out: Path, executor: FakeExecutor | None = None, toml: str = TOML) -> FakeExecutor:
    study = out.parent / "t.toml"
    study.write_text(toml)
    plan = load_study(str(study), [], learner_registry(), task_registry())
    executor = executor or FakeExecutor()
    assert plan.tuning is not None
    run_tuned(plan.runs, plan.tuning, learner_registry(), RunStore(out), executor, lambda e: None)
    return executor


def specs(out: Path, phase: str) -> list[dict[str, Any]]:
    metas = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/meta.json"))]
    return [m["spec"] for m in metas if m["spec"]["tuning"]["phase"] == phase]


def edit_journal(out: Path, change: Any) -> None:
    path = out / "tuning" / "journal.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(line) + "\n" for line in change(lines)))


def test_journal_value_disagreeing_with_its_run_folder_loses(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tune(out)
    trials = {s["tuning"]["trial"]: s for s in specs(out, "tuning")}
    store = RunStore(out)
    scores = {n: val_score(store, RunSpec.from_json(s).run_id, "val_accuracy") for n, s in trials.items()}
    best, worst = max(scores, key=lambda n: scores[n]), min(scores, key=lambda n: scores[n])
    assert [s["tuning"]["trial"] for s in specs(out, "final")] == [best]

    def inflate(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for line in lines:
            if line.get("values") and line.get("trial_id") == worst:
                line["values"] = [0.99]
        return lines

    edit_journal(out, inflate)
    for spec in specs(out, "final"):
        import shutil

        shutil.rmtree(out / "runs" / RunSpec.from_json(spec).run_id)
    with pytest.warns(UserWarning, match=rf"journal.log: trial {worst} .* the run folders' value is used"):
        tune(out)
    assert [s["tuning"]["trial"] for s in specs(out, "final")] == [best]


def test_trial_outside_the_search_space_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tune(out, toml=TOML.replace("trials = 3", "trials = 2"))

    def widen(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for line in lines:
            if line.get("param_name") == "lr" and line.get("trial_id") == 0:
                line["param_value_internal"] = 5.0
        return lines

    edit_journal(out, widen)
    with pytest.warns(UserWarning, match="lr = '5.0' lies outside the study's search space"):
        tune(out)  # trials = 3 now: one more is asked
    assert all(1e-4 <= s["params"]["lr"] <= 3e-2 for s in specs(out, "tuning") + specs(out, "final"))


def test_missing_trial_folder_is_run_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tune(out)
    gone = RunSpec.from_json(specs(out, "tuning")[0]).run_id
    import shutil

    shutil.rmtree(out / "runs" / gone)
    with pytest.warns(UserWarning, match=f"its run runs/{gone} is missing; run again"):
        again = tune(out)
    assert again.executed == [gone] and (out / "runs" / gone / "meta.json").exists()


def test_truncated_journal_names_file_and_line_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tune(out)
    path = out / "tuning" / "journal.log"
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    cut = sum(len(line) for line in lines[:5]) + len(lines[5]) // 2
    path.write_bytes(data[:cut] + b'{"op_code": 0}\n')  # a line cut short, then a later driver's line
    with pytest.warns(UserWarning, match=rf"{path}: line 6 is truncated"):
        again = tune(out)
    # the lost lines' trials are drawn again; the study completes from the intact part
    assert len(again.executed) >= 1 and specs(out, "final")
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert list(path.parent.glob("journal.log.damaged-*"))


def test_killed_trial_is_retried_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    study = tmp_path / "t.toml"
    study.write_text(TOML)
    plan = load_study(str(study), [], learner_registry(), task_registry())
    first = FakeExecutor()
    tune(tmp_path / "probe", first)  # the same trials, drawn the same way
    trial0, trial1 = first.executed[0], first.executed[1]
    executor = tune(out, FakeExecutor(kill={trial0: 1, trial1: 5}))
    assert executor.executed.count(trial0) == 2 and executor.executed.count(trial1) == 2  # once more each
    store = RunStore(out)
    assert store.status(trial0) == "ok" and store.status(trial1) == "failed"
    assert plan.tuning is not None


@pytest.mark.parametrize("name", ["journal.log", "ask.lock"])
@pytest.mark.parametrize("target", ["missing", "existing"])
def test_journal_and_lock_are_never_written_through_a_symlink(tmp_path: Path, name: str, target: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    out = tmp_path / "out"
    (out / "tuning").mkdir(parents=True)
    (out / "tuning" / name).symlink_to(victim / ("precious.txt" if target == "existing" else "new.log"))
    with pytest.raises(UnsafePathError, match=f"{name}: it is a symbolic link"):
        tune(out)
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "keep me"
