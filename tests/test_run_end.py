"""Runs end, and drivers tell the truth (issue 22, points 3, 5, 6): a hung run is killed at its
timeout and the study goes on; a worker whose driver is gone stores nothing; a driver exits
non-zero when a run of its study failed elsewhere; one thread per run; CPU time beside wall time
and a contention mark; unavailable tasks; a non-float loss; failed runs keep their traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bpbench.experiments.front.availability import task_problem
from bpbench.experiments.front.cli import main
from bpbench.experiments.front.conformance import ConformanceError, check_learner
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import expand
from bpbench.experiments.report.render import render
from bpbench.experiments.report.summary import CONTENTION_MARK, summarize
from bpbench.experiments.run.runner import LoadedTasks
from bpbench.experiments.schedule.execute import execute_unstored
from bpbench.experiments.schedule.process_pool import ProcessExecutor, _start_worker
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from bpbench.learners.backprop import Backprop
from bpbench.learners.base import StepOutput
from bpbench.tasks.digits import Digits
from conftest import REPO, bpbench
from folder_tools import fake_run, spec

TINY = 'tasks = ["digits"]\n[model]\nhidden = [8]\n[budget]\nepochs = 1\n'


def test_a_hung_run_is_killed_at_its_timeout_and_the_study_goes_on(tmp_path: Path, with_plugins: Path) -> None:
    study = tmp_path / "hang.toml"
    study.write_text(TINY + "[schedule]\ntimeout = 20\n[learners.sleeping]\n[learners.backprop]\n")
    out = tmp_path / "out"
    start = time.monotonic()
    proc = bpbench("run", str(study), "--out", str(out), "--jobs", "1", timeout=240)
    assert time.monotonic() - start < 200
    assert proc.returncode == 1, proc.stderr
    metas = {m["spec"]["label"]: m for m in RunStore(out).metas()}
    assert metas["backprop"]["status"] == "ok", (metas["backprop"].get("error"), proc.stderr[-2000:])
    assert metas["sleeping"]["status"] == "failed"
    assert metas["sleeping"]["error"].startswith("timed out after 20 s")
    assert "1 failed" in proc.stdout


def test_a_worker_whose_driver_is_gone_stores_nothing(tmp_path: Path) -> None:
    """The driver's end of the pipe closes (it died): the worker's next event breaks the pipe, and
    the run must not be stored as failed (it is missing; a resumed driver runs it)."""
    run = expand(
        "s",
        {"tasks": ["digits"], "model": {"hidden": [8]}, "budget": {"epochs": 3}, "learners": {"backprop": {}}},
        learner_registry(),
        task_registry(),
    ).runs[0]
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), env_path])
    try:
        proc, conn = _start_worker(str(tmp_path), "cpu", 1)
    finally:
        os.environ["PYTHONPATH"] = env_path
    conn.send(run.to_json())
    conn.close()  # as a SIGKILLed driver's end does
    assert proc.wait(timeout=120) != 0
    assert not (tmp_path / "runs" / run.run_id).exists()


def test_driver_exits_non_zero_when_another_driver_failed_a_run(tmp_path: Path) -> None:
    study = tmp_path / "two.toml"
    study.write_text("seeds = 2\n" + TINY + "[learners.backprop]\n")
    from bpbench.experiments.front.api import plan_runs

    out = tmp_path / "out"
    _, runs = plan_runs(str(study), out=out)
    held = runs[1][0]
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a live "other driver"
    claim = out / "claims" / held.run_id / "0"
    claim.parent.mkdir(parents=True)
    claim.write_text(
        json.dumps(
            {
                "host": os.uname().nodename,
                "pid": owner.pid,
                "pidns": os.readlink("/proc/self/ns/pid") if Path("/proc/self/ns/pid").exists() else "",
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    survivor = subprocess.Popen(
        [sys.executable, "-m", "bpbench", "run", str(study), "--out", str(out), "--executor", "inline"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while RunStore(out).status(runs[0][0].run_id) is None and time.time() < deadline:
            time.sleep(0.5)
        meta = {
            "run_id": held.run_id,
            "seed": held.seed,
            "spec": held.to_json(),
            "status": "failed",
            "error": "RuntimeError: failed on the other driver",
            "end_time": "2026-01-01T00:00:00",
        }
        RunStore(out).write(held.run_id, [], meta)  # the other driver stores its run as failed ...
        claim.unlink()  # ... and lets go of it
        stdout, stderr = survivor.communicate(timeout=120)
    finally:
        owner.kill()
        survivor.kill()
    assert survivor.returncode == 1, stderr
    assert "1 failed" in stderr and "finished by another driver" in stdout


def test_one_thread_per_run_by_default() -> None:
    assert ProcessExecutor().plan(4)[1] == 1
    assert ProcessExecutor(threads=3).plan(4)[1] == 3


def test_runs_record_cpu_time_and_load_and_the_table_marks_contention(tmp_path: Path) -> None:
    run = expand(
        "s",
        {"tasks": ["digits"], "model": {"hidden": [8]}, "budget": {"epochs": 1}, "learners": {"backprop": {}}},
        learner_registry(),
        task_registry(),
    ).runs[0]
    _, meta, outcome = execute_unstored(
        run, learner_registry(), task_registry(), torch.device("cpu"), LoadedTasks(), lambda e: None
    )
    assert outcome.status == "ok"
    assert meta["cpu_seconds"] > 0 and 0 < meta["wall_seconds"] < 600
    assert set(meta["load"]) == {"start", "end"} and all(isinstance(v, float) for v in meta["load"].values())
    for seed in range(2):
        fake_run(tmp_path / "busy", spec(seed=seed), wall_seconds=30.0, cpu_seconds=2.0)
        fake_run(tmp_path / "calm", spec(seed=seed), wall_seconds=2.2, cpu_seconds=2.0)
    busy, calm = (render(summarize(RunTable.read(RunStore(tmp_path / name))), "text") for name in ("busy", "calm"))
    assert CONTENTION_MARK in busy and "contention" in busy
    assert CONTENTION_MARK not in calm


class TensorLoss(Backprop):
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        out = super().train_step(x, y)
        return StepOutput(torch.tensor(out.loss), out.forward_samples)  # type: ignore[arg-type]


def test_check_refuses_a_loss_that_is_not_a_float() -> None:
    with pytest.raises(ConformanceError, match=r"StepOutput\.loss is a Tensor"):
        check_learner(TensorLoss, Digits().load(Digits.Params()))


class Boom(Backprop):
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        raise RuntimeError("boom in train_step")


def test_a_failed_run_keeps_its_traceback() -> None:
    learners = learner_registry(extra={"boom": Boom})
    run = expand(
        "s",
        {"tasks": ["digits"], "model": {"hidden": [8]}, "budget": {"epochs": 1}, "learners": {"boom": {}}},
        learners,
        task_registry(),
    ).runs[0]
    _, meta, _ = execute_unstored(run, learners, task_registry(), torch.device("cpu"), LoadedTasks(), lambda e: None)
    assert meta["status"] == "failed" and "boom in train_step" in meta["error"]
    assert "Traceback" in meta["traceback"] and "train_step" in meta["traceback"]


def test_a_task_missing_its_optional_package_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from bpbench.tasks.japanese_vowels import JapaneseVowels

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sktime" else real(name, *a))
    problem = task_problem(JapaneseVowels)
    assert problem is not None and "bpbench[speech]" in problem
    assert main(["check", "backprop", "--task", "japanese_vowels"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "japanese_vowels" in err and "bpbench[speech]" in err
    monkeypatch.setenv("BPBENCH_CACHE", "off")
    assert main(["list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("japanese_vowels"))
    assert "unavailable" in line and "bpbench[speech]" in line
