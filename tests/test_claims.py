"""Run claims: two drivers on one results folder split the runs; claims of dead drivers are taken over."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bpbench.experiments.store.claims import Claims, pid_running
from helpers import REPO, run_tiny_study

TINY = 'seeds = 2\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n[learners.backprop]\n'


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(proc.stdout)


def plant(claims_root: Path, run_id: str, generation: int = 0, age_s: float = 0.0, **owner: object) -> Path:
    """Write a claim as another driver would have, ``age_s`` seconds since its last refresh."""
    path = claims_root / run_id / str(generation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "start_time": "2026-01-01T00:00:00+00:00", **owner}))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_claim_is_exclusive_and_released(tmp_path: Path) -> None:
    mine, other_driver = Claims(tmp_path), Claims(tmp_path)
    assert mine.acquire("r1")
    assert not other_driver.acquire("r1")  # same host, live pid: held
    owner = other_driver.owner("r1")
    assert owner is not None and owner["pid"] == os.getpid() and owner["host"] == mine.me["host"]
    assert set(owner) >= {"host", "pid", "pidns", "start_time", "token", "age_s"}
    mine.release("r1")
    assert other_driver.owner("r1") is None and other_driver.acquire("r1")
    other_driver.close()
    assert not (tmp_path / "r1").exists()  # the claim and its emptied folder are removed


def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path: Path) -> None:
    claims = Claims(tmp_path, timeout=60, refresh=10)
    me = claims.me
    plant(tmp_path, "dead", host=me["host"], pidns=me["pidns"], pid=dead_pid())  # fresh, but its pid is gone
    plant(tmp_path, "far_fresh", host="elsewhere.example", pidns="x", pid=1, age_s=5)
    plant(tmp_path, "far_stale", host="elsewhere.example", pidns="x", pid=1, age_s=120)  # not refreshed for 2 min
    plant(tmp_path, "half_written", age_s=1)  # created, content not yet written: judged by age
    (tmp_path / "half_written" / "0").write_text("")
    assert claims.acquire("dead") and claims.acquire("far_stale")
    assert not claims.acquire("far_fresh") and not claims.acquire("half_written")
    # taking over creates the next generation and removes the stale one
    assert [p.name for p in (tmp_path / "dead").iterdir()] == ["1"]
    assert claims.owner("dead")["pid"] == os.getpid()
    # of two drivers that judged the same claim stale, one wins: the other now sees a live claim
    assert not Claims(tmp_path).acquire("far_stale")
    claims.close()


def test_held_claims_are_refreshed(tmp_path: Path) -> None:
    claims = Claims(tmp_path, timeout=2.0, refresh=0.2)
    assert claims.acquire("r1")
    path = tmp_path / "r1" / "0"
    os.utime(path, (time.time() - 1.5, time.time() - 1.5))
    time.sleep(0.6)
    assert claims.owner("r1")["age_s"] < 0.5  # touched by the refresh thread
    claims.close()
    assert not path.exists()


def test_stale_claim_of_dead_driver_is_taken_over_in_a_study(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY)
    from bpbench.experiments.plan.registry import learner_registry, task_registry
    from bpbench.experiments.plan.study import load_study

    run_ids = [s.run_id for s in load_study(str(tmp_path / "tiny.toml"), [], learner_registry(), task_registry()).runs]
    me = Claims(tmp_path).me
    plant(tmp_path / "out" / "claims", run_ids[0], host=me["host"], pidns=me["pidns"], pid=dead_pid())
    out = run_tiny_study(tmp_path, TINY)  # would wait forever if the dead driver's claim were honoured
    metas = [json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")]
    assert sorted(m["run_id"] for m in metas) == sorted(run_ids) and all(m["status"] == "ok" for m in metas)
    assert not any(p.is_file() for p in (out / "claims").rglob("*"))  # all released


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_two_drivers_on_one_folder_split_the_runs(tmp_path: Path) -> None:
    """The issue's case: a 2-learner x 4-seed study, two drivers on one --out; together they run it once."""
    study = tmp_path / "two.toml"
    study.write_text(
        'seeds = 4\ntasks = ["digits"]\n[model]\nhidden = [64]\n[budget]\nepochs = 6\n'
        "[learners.backprop]\n[learners.fa]\n"
    )
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    drivers = [  # one with worker processes, one inline: claims are the same for every executor
        subprocess.Popen(
            [sys.executable, "-m", "bpbench", "run", str(study), "--out", str(out), *extra],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in (["--executor", "process", "--jobs", "1", "--threads", "1"], ["--executor", "inline"])
    ]
    executed, accounted = [], []
    for proc in drivers:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        ran = int(re.search(r"^(\d+) run\(s\) in", stdout, re.M).group(1))
        other = re.search(r"; (\d+) finished by another driver", stdout)
        skipped = re.search(r"skipping (\d+) completed", stderr)
        executed.append(ran)
        accounted.append(ran + (int(other.group(1)) if other else 0) + (int(skipped.group(1)) if skipped else 0))
    assert sum(executed) == 8, executed  # the study's size: no run executed twice
    assert accounted == [8, 8]  # each driver saw every run: run by it, by the other, or done before it started
    assert all(n >= 1 for n in executed), executed  # the work was split
    metas = [json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")]
    assert len(metas) == 8 and all(m["status"] == "ok" for m in metas)


def test_bad_claim_timing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refresh = 5 s, timeout = 5 s"):
        Claims(tmp_path, timeout=5, refresh=5)


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds worker processes through /proc (Linux)")
@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_process_workers_end_with_their_driver(tmp_path: Path) -> None:
    """A SIGKILLed driver's worker exits too, so the driver that takes over its claims runs alone."""
    study = tmp_path / "slow.toml"
    study.write_text(
        'seeds = 1\ntasks = ["digits"]\n[model]\nhidden = [64]\n[budget]\nepochs = 1000\n[learners.backprop]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bpbench",
            "run",
            str(study),
            "--out",
            str(tmp_path / "out"),
            "--jobs",
            "1",
            "--threads",
            "1",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not children(driver.pid) and time.time() < deadline:
        time.sleep(0.1)
    workers = children(driver.pid)
    assert workers, "the driver started no worker process"
    driver.kill()  # SIGKILL the driver alone; its worker is not signalled
    driver.wait()
    deadline = time.time() + 120
    while any(pid_running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [w for w in workers if pid_running(w)]
    for w in alive:  # clean up before failing
        os.kill(w, signal.SIGKILL)
    assert not alive, "the worker outlived its driver"
