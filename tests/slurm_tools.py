"""A real single-node Slurm cluster on this machine, for the Slurm executor's tests.

``slurm_cluster(folder)`` installs Debian's slurm-wlm and munge where it can (root with apt-get;
else the test skips, saying why), writes a slurm.conf for localhost (127.0.0.1, free ports, state
under ``folder``, no cgroups: ``proctrack/linuxproc``, ``task/none``, so it runs in a container),
starts munged, slurmctld and slurmd in the foreground as its own children, and yields the
environment (``SLURM_CONF``) clients need. On exit it cancels the cluster's jobs and stops exactly
the three processes it started.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from apt_tools import require

CONF = """\
ClusterName=bpbench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=2
MinJobAge=600
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_idle(env: dict[str, str], procs: list[subprocess.Popen], folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            logs = " | ".join(f.read_text()[-400:] for f in folder.glob("*.log"))
            raise AssertionError(f"{dead} exited while the cluster started: {logs}")
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
        if out.strip() == "idle":
            return
        time.sleep(0.5)
    raise AssertionError(f"the Slurm node did not become idle in {timeout} s")


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster under ``folder`` (a short path: munge's socket lives there)."""
    binaries = {name: require(name, package) for name, package in (("munged", "munge"), ("slurmctld", "slurm-wlm"))}
    binaries |= {name: require(name, "slurm-wlm") for name in ("slurmd", "sbatch", "scontrol", "sinfo")}
    if os.geteuid() != 0:
        pytest.skip("a test Slurm cluster runs its daemons as root (SlurmUser=root)")
    folder.chmod(0o755)  # munged checks every folder above its socket is searchable by all
    munge, private = folder / "munge", folder / "munge-key"
    for sub, mode in ((munge, 0o755), (private, 0o700), (folder / "state", 0o700), (folder / "spool", 0o700)):
        sub.mkdir(parents=True)
        sub.chmod(mode)  # munged wants its socket's folder searchable by all, its key private
    (private / "munge.key").write_bytes(secrets.token_bytes(1024))
    (private / "munge.key").chmod(0o600)
    socket_path = munge / "munge.socket"
    conf = folder / "slurm.conf"
    conf.write_text(
        CONF.format(
            ctld_port=free_port(),
            d_port=free_port(),
            socket=socket_path,
            folder=folder,
            host=socket.gethostname(),
            cpus=os.cpu_count() or 1,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []
    log = open(folder / "daemons.out", "w")  # noqa: SIM115  (closed below)
    try:
        procs.append(
            subprocess.Popen(
                [
                    binaries["munged"],
                    "-F",
                    f"--socket={socket_path}",
                    f"--key-file={private / 'munge.key'}",
                    f"--pid-file={private / 'munged.pid'}",
                    f"--log-file={private / 'munged.log'}",
                    f"--seed-file={private / 'seed'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 20
        while not socket_path.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.1)
        daemons = ([binaries["slurmctld"], "-D", "-f", str(conf)], [binaries["slurmd"], "-D", "-f", str(conf)])
        for cmd in (daemons[0], [*daemons[1], "-N", "localhost"]):
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(0.5)
        _wait_idle(env, procs, folder)
        yield env
    finally:
        if len(procs) == 3 and procs[1].poll() is None:
            subprocess.run(["scancel", "--full", "--partition", "debug"], env=env, capture_output=True, timeout=30)
            time.sleep(3)  # KillWait=2: the jobs' processes are gone before slurmd stops
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
