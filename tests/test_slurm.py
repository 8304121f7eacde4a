"""The Slurm executor against a real one-node Slurm cluster started by the test (slurm_tools.py).

One study's driver is killed mid-study and restarted: every run ends stored once, from the job
array the first driver submitted (re-attached, never resubmitted). Meanwhile another study's run
hangs past its one-minute Slurm time limit: Slurm kills it, and the run is recorded as failed
with Slurm's state and reason. (Slurm's time limits are whole minutes, checked every 30 s: this
test takes about 90 s.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import REPO
from slurm_tools import slurm_cluster

pytest.importorskip("submitit", reason='the Slurm executor needs submitit: pip install "bpbench[slurm]"')


@pytest.fixture(scope="module")
def cluster(plugin_dir: Path) -> Iterator[dict[str, str]]:
    folder = Path(tempfile.mkdtemp(prefix="bpslurm", dir="/tmp"))  # short: munge's socket path
    with slurm_cluster(folder) as env:
        pythonpath = os.pathsep.join([str(plugin_dir), str(REPO), os.environ.get("PYTHONPATH", "")])
        yield {**env, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}


def driver(env: dict[str, str], study: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bpbench", "run", str(study), "--out", str(out), "--executor", "slurm", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def metas(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/meta.json")}


@pytest.mark.slow
def test_slurm_study_survives_its_driver_and_records_slurm_kills(cluster: dict[str, str], tmp_path: Path) -> None:
    hang = tmp_path / "hang.toml"  # the sleeping learner's third step never returns
    hang.write_text(
        'seeds = 1\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n'
        "[schedule]\ntimeout = 3600\n[slurm]\ntime = 1\n[learners.sleeping]\n"
    )
    hung = driver(cluster, hang, tmp_path / "hang")
    study = tmp_path / "slow.toml"  # 3 runs of ~20 steps at 0.2 s each
    study.write_text(
        'seeds = 3\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n'
        "[learners.slow]\nbatch_size = 128\n"
    )
    out = tmp_path / "slow"
    first = driver(cluster, study, out, "--slurm", "time=10", "--jobs", "1")
    deadline = time.monotonic() + 120
    while not metas(out) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    assert first.poll() is None and len(metas(out)) == 1, first.communicate()
    before = metas(out)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert len(list((out / "slurm" / "submitted").iterdir())) == 2  # two runs still queued or running

    second = driver(cluster, study, out, "--slurm", "time=10", "--jobs", "1")
    stdout, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr
    after = metas(out)
    assert len(after) == 3 and all(m["status"] == "ok" for m in after.values())
    ((run_id, meta),) = before.items()
    assert after[run_id]["end_time"] == meta["end_time"]  # the completed run was not run again
    arrays = {m["slurm_job"].split("_")[0] for m in after.values()}
    assert len(arrays) == 1  # every run came from the first driver's array: re-attached, not resubmitted
    assert sorted(m["slurm_job"].split("_")[1] for m in after.values()) == ["0", "1", "2"]
    assert list((out / "slurm" / "submitted").iterdir()) == []
    assert "\n2 run(s) in" in stdout  # the restarted driver collected the two it re-attached to

    _, hung_err = hung.communicate(timeout=200)
    assert hung.returncode == 1, hung_err  # the study completed with one failed run
    (failed,) = metas(tmp_path / "hang").values()
    assert failed["status"] == "failed"
    assert failed["error"].startswith("killed by Slurm: TIMEOUT (TimeLimit)"), failed["error"]


def test_bad_slurm_options_are_one_line_exit_2_before_any_run(tmp_path: Path) -> None:
    from bpbench.experiments.front.cli import main
    from bpbench.experiments.schedule.slurm_options import SlurmOptions, slurm_options

    expected = SlurmOptions(partition="gpu", time=5, gpus=1)  # flags over the table
    assert slurm_options({"partition": "gpu", "time": 30}, ["time=5", "gpus=1"]) == expected
    study = tmp_path / "s.toml"
    study.write_text('seeds = 1\ntasks = ["digits"]\n[budget]\nepochs = 1\n[learners.backprop]\n')
    for bad in (["--slurm", "time=soon"], ["--slurm", "nodes=2"], ["--slurm", "gpus=-1"], ["--slurm", "time"]):
        assert main(["run", str(study), "--out", str(tmp_path / "out"), "--executor", "slurm", *bad]) == 2
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--slurm", "time=5"]) == 2  # process executor
    assert not (tmp_path / "out").exists()
