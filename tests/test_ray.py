"""The Ray executor against a real Ray head: same results as the process executor, a killed Ray
worker, a killed driver resuming; and the one-line error without Ray.

The head is bound to 127.0.0.1 only (token authentication on, dashboard off) and every process
it starts is stopped in teardown, even when a test fails. Ray replaces ``--node-ip-address
127.0.0.1`` by the host's address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's
single-machine mode) is set, so the head and the drivers get that too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from helpers import REPO, bpbench

pytestmark = pytest.mark.ray  # every test here concerns the Ray executor; most start a local Ray cluster

RAY_MISSING_REASON = 'Ray is not installed (it comes with the test extra: pip install -c constraints.txt ".[test]")'
TINY = (
    'seeds = 2\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n[learners.backprop]\n[learners.fa]\n'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Processes of session ``sid`` (the head's ``ray start`` and everything Ray started from it)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def stop_session(sid: int) -> None:
    """Stop exactly the Ray processes this test started (``ray stop`` would stop every Ray on the host)."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for pid in session_pids(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while session_pids(sid) and time.time() < deadline:
            time.sleep(0.1)
        if not session_pids(sid):
            return


@pytest.fixture(scope="module")
def ray_head(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Ray head on 127.0.0.1 with 2 CPUs; yields the environment (address, token, plugins) drivers need."""
    pytest.importorskip("ray", reason=RAY_MISSING_REASON)
    if not Path("/proc/self/stat").is_file():
        pytest.skip("these tests find the Ray processes they started (to stop them) through /proc: Linux only")
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert ray_cli, "the ray package is installed but its `ray` command is not on PATH"
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="bpray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "BPBENCH_TEST_MARKERS": str(tmp_path_factory.mktemp("markers")),
        "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--include-dashboard=false",
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            str(temp),
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = head.communicate(timeout=120)
        assert head.returncode == 0, log
        yield {**env, "BPBENCH_RAY_ADDRESS": f"127.0.0.1:{port}"}
    finally:
        stop_session(head.pid)
        shutil.rmtree(temp, ignore_errors=True)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return bpbench(*args, env=env, timeout=240)


def metas(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")}


def test_ray_matches_the_process_executor(ray_head: dict[str, str], tmp_path: Path) -> None:
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    ray_out, proc_out = tmp_path / "ray", tmp_path / "process"
    ray_run = run_cli(
        ray_head,
        "run",
        str(study),
        "--out",
        str(ray_out),
        "--executor",
        "ray",
        "--address",
        ray_head["BPBENCH_RAY_ADDRESS"],
        "--threads",
        "1",
    )
    assert ray_run.returncode == 0, ray_run.stderr
    assert "4 run(s)" in ray_run.stdout
    from bpbench.experiments.front.cli import main

    assert (
        main(["run", str(study), "--out", str(proc_out), "--executor", "process", "--jobs", "1", "--threads", "1"]) == 0
    )
    by_ray, by_process = metas(ray_out), metas(proc_out)
    assert set(by_ray) == set(by_process) and len(by_ray) == 4
    for run_id, meta in by_ray.items():
        assert meta["status"] == "ok" and meta["hardware"]["torch_threads"] == 1
        # backprop and fa are deterministic on CPU: the same run gives the same numbers anywhere
        assert meta["measures"]["values"]["test_accuracy"] == by_process[run_id]["measures"]["values"]["test_accuracy"]
        assert meta["measures"]["values"]["train_flops"] == by_process[run_id]["measures"]["values"]["train_flops"]
    assert not any(p.is_file() for p in (ray_out / "claims").rglob("*"))  # every claim released


def test_killed_ray_worker_is_retried_once_then_recorded(ray_head: dict[str, str], tmp_path: Path) -> None:
    study = tmp_path / "kill.toml"
    study.write_text(
        'seeds = 1\ntasks = ["digits", "fsdd"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n'
        '[learners.backprop]\ntasks = ["digits"]\n[learners.killed_once]\ntasks = ["digits"]\n'
        '[learners.killing]\ntasks = ["fsdd"]\n'
    )
    out = tmp_path / "out"
    proc = run_cli(
        ray_head,
        "run",
        str(study),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--address",
        ray_head["BPBENCH_RAY_ADDRESS"],
    )
    assert proc.returncode == 1, proc.stderr  # one run failed; the study completed
    by_label = {(m["spec"]["label"], m["spec"]["task"]): m for m in metas(out).values()}
    assert len(by_label) == 3
    # SIGKILLed on its first attempt (the marker proves it), retried by Ray, then trained
    assert (Path(ray_head["BPBENCH_TEST_MARKERS"]) / "killed_once-digits").is_file()
    assert by_label[("killed_once", "digits")]["status"] == "ok"
    # SIGKILLed on every attempt: recorded as failed with the reason, after one retry
    error = by_label[("killing", "fsdd")]["error"]
    assert by_label[("killing", "fsdd")]["status"] == "failed"
    assert "Ray worker died while running this run (retried 1x)" in error and "WorkerCrashedError" in error
    assert by_label[("backprop", "digits")]["status"] == "ok"  # nothing else lost


def test_a_hung_ray_run_is_cancelled_at_its_timeout(ray_head: dict[str, str], tmp_path: Path) -> None:
    study = tmp_path / "hang.toml"
    study.write_text(
        'seeds = 1\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n'
        "[schedule]\ntimeout = 60\n[learners.sleeping]\n[learners.backprop]\n"
    )
    out = tmp_path / "out"
    proc = run_cli(
        ray_head,
        "run",
        str(study),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--address",
        ray_head["BPBENCH_RAY_ADDRESS"],
    )
    assert proc.returncode == 1, proc.stderr
    by_label = {m["spec"]["label"]: m for m in metas(out).values()}
    assert by_label["backprop"]["status"] == "ok"
    assert by_label["sleeping"]["status"] == "failed"
    assert by_label["sleeping"]["error"].startswith("timed out after 60 s")


def test_killed_driver_resumes_without_repeating_a_run(ray_head: dict[str, str], tmp_path: Path) -> None:
    study = tmp_path / "resume.toml"
    study.write_text(
        'seeds = 4\ntasks = ["digits"]\n[model]\nhidden = [32]\n[budget]\nepochs = 2\n[learners.backprop]\n'
    )
    out = tmp_path / "out"
    args = [
        "run",
        str(study),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--address",
        ray_head["BPBENCH_RAY_ADDRESS"],
        "--jobs",
        "1",
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "bpbench", *args],
        cwd=REPO,
        env=ray_head,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while len(metas(out)) < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver dies mid-study; Ray ends its job's tasks
    driver.wait()
    done_before = {rid: m["start_time"] for rid, m in metas(out).items()}
    assert 2 <= len(done_before) < 4
    resumed = run_cli(ray_head, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"skipping {len(done_before)} completed run(s)" in resumed.stderr
    assert f"\n{4 - len(done_before)} run(s) in" in resumed.stdout  # the dead driver's claims were taken over
    after = metas(out)
    assert len(after) == 4 and all(m["status"] == "ok" for m in after.values())
    assert all(after[rid]["start_time"] == start for rid, start in done_before.items())  # none run again


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False")
def test_ray_runs_on_the_gpu(ray_head: dict[str, str], tmp_path: Path) -> None:
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    proc = run_cli(
        ray_head,
        "run",
        str(study),
        "--out",
        str(tmp_path / "out"),
        "--executor",
        "ray",
        "--address",
        ray_head["BPBENCH_RAY_ADDRESS"],
        "--device",
        "cuda",
    )
    assert proc.returncode == 0, proc.stderr
    for meta in metas(tmp_path / "out").values():  # Ray gave each task a GPU: "cuda" inside it is that GPU
        assert meta["status"] == "ok" and meta["hardware"]["device"] == "cuda" and meta["hardware"]["gpu"]


def test_without_ray_the_ray_executor_fails_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bpbench.experiments.front.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "bpbench[ray]"' in err
    assert not (tmp_path / "out").exists()


def test_an_address_where_no_cluster_answers_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray", reason=RAY_MISSING_REASON)
    from bpbench.experiments.front.cli import main

    (tmp_path / "tiny.toml").write_text(TINY)
    port = free_port()  # nothing listens there
    assert (
        main(
            [
                "run",
                str(tmp_path / "tiny.toml"),
                "--out",
                str(tmp_path / "out"),
                "--executor",
                "ray",
                "--address",
                f"127.0.0.1:{port}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"address = '127.0.0.1:{port}': no Ray cluster answers there" in err
    assert not (tmp_path / "out").exists()


def test_address_without_the_ray_executor_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bpbench.experiments.front.cli import main

    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "out"), "--address", "10.0.0.1:6379"]) == 2
    assert "address = '10.0.0.1:6379' is for the ray executor only" in capsys.readouterr().err
