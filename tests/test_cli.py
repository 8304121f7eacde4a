"""The CLI end to end in real processes: list, run quick (reduced), table formats, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, bpbench


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_list_shows_learners_tasks_studies_and_unavailable_reason(with_plugins) -> None:
    out = bpbench("list", check=True).stdout
    for name in ("backprop", "digits", "mnist5k", "fsdd", "quick"):
        assert name in out
    line = next(ln for ln in out.splitlines() if "needs_missing_dep" in ln)
    assert "unavailable: ModuleNotFoundError" in line
    assert "conforms" in bpbench("check", "backprop", "--task", "fsdd", check=True).stdout


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_quick_end_to_end_reduced(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    proc = bpbench(
        "run",
        "quick",
        "--out",
        str(out),
        "--set",
        "seeds=1",
        "--set",
        "budget.epochs=3",
        "--set",
        "learners={backprop = {}}",
        check=True,
    )
    assert "3 run(s)" in proc.stdout and "(0 failed)" in proc.stdout
    metas = [json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")]
    assert len(metas) == 3 and all(m["status"] == "ok" for m in metas)
    for meta in metas:
        assert meta["measures"]["values"]["test_accuracy"] > 0.8, meta["spec"]["task"]  # chance is 0.1
        assert meta["versions"]["torch"].startswith("2.13") and meta["hardware"]["torch_threads"] >= 1
        assert set(meta["git"]) == {"commit", "dirty", "source", "reason"} and meta["start_time"] < meta["end_time"]
        assert meta["git"]["source"] == "checkout" and len(meta["git"]["commit"]) == 40  # the tests run the checkout
        assert meta["providers"]["learner"]["distribution"] == "bpbench" == meta["providers"]["task"]["distribution"]
        assert meta["providers"]["learner"]["version"] == meta["versions"]["bpbench"]
    csv = bpbench("table", str(out), "--format", "csv", check=True).stdout
    assert csv.splitlines()[0].startswith("learner,") and len(csv.strip().splitlines()) == 4
    md = bpbench("table", str(out), "--format", "markdown", check=True).stdout
    assert md.splitlines()[1].startswith("|") and "backprop" in md
    latex = bpbench("table", str(out), "--format", "latex", check=True).stdout
    assert "\\toprule" in latex and "\\bottomrule" in latex


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_resume_after_killed_study(tmp_path: Path) -> None:
    out = tmp_path / "resume"
    args = [
        "run",
        "quick",
        "--out",
        str(out),
        "--set",
        "seeds=2",
        "--set",
        "budget.epochs=2",
        "--set",
        "learners={backprop = {}}",
        "--jobs",
        "1",
        "--threads",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpbench", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while len(list(out.glob("runs/*/meta.json"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and its workers die mid-study
    proc.wait()
    done_before = {p.parent.name: json.loads(p.read_text())["start_time"] for p in out.glob("runs/*/meta.json")}
    assert 2 <= len(done_before) < 6
    resumed = bpbench(*args, check=True)
    assert f"skipping {len(done_before)} completed run(s)" in resumed.stderr
    assert f"{6 - len(done_before)} run(s)" in resumed.stdout
    metas = {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")}
    assert len(metas) == 6 and all(m["status"] == "ok" for m in metas.values())
    assert all(metas[rid]["start_time"] == start for rid, start in done_before.items())  # not rerun


def test_a_warning_raised_during_a_command_is_shown_once_after_it() -> None:
    """The CLI records warnings while a command runs and shows them afterwards; showing one must
    not record it again (that once looped, appending to the list being read, until memory ran out)."""
    import resource
    import subprocess
    import sys

    code = (
        "import warnings, bpbench.experiments.front.cli as cli\n"
        "cli.cmd_list = lambda args: (warnings.warn('noisy plugin', UserWarning), 0)[1]\n"
        "raise SystemExit(cli.main(['list']))"
    )

    def limit_memory() -> None:  # a runaway list dies here in seconds instead of taking the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=limit_memory
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("noisy plugin") == 1
