"""The Slurm executor: a study's runs as a Slurm job array, submitted through submitit.

- Each call submits the runs this driver claims (``RunQueue``) as one job array (``map_array``),
  asking per run for the ``SlurmOptions`` (partition, time limit, CPUs, memory, GPUs); at most
  ``jobs`` array tasks run at once (0: as many as Slurm allows). A task runs one run and returns
  its rows and meta through submitit's folder ``OUT/slurm/``; the driver stores them as they come
  back (so workers need the results folder's file system for ``OUT/slurm`` only).
- Resume: ``OUT/slurm/submitted/<run_id>`` names the job of each run submitted and not yet
  stored. A driver that died leaves them; the next one re-attaches to a job still queued or
  running, collects one that finished, and resubmits only a run whose job Slurm no longer knows
  and that left no result. A stored run is never submitted again (its record is removed after
  it is stored; its meta's ``slurm_job`` tells a leftover record apart).
- A job Slurm ends without a result (time limit, preemption, node failure, cancel, out of
  memory) is recorded as failed with Slurm's state and reason, e.g. "killed by Slurm: TIMEOUT
  (TimeLimit)"; a run that raises or diverges is recorded by the runner, as everywhere.
- Job states come from ``scontrol show job`` (jobs Slurm still remembers: ``MinJobAge``), then
  ``sacct`` (clusters with accounting).
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
import torch

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.runner import LoadedTasks
from bpbench.experiments.schedule.execute import Event, Outcome, execute_unstored, record_lost
from bpbench.experiments.schedule.queue import RunQueue
from bpbench.experiments.schedule.slurm_options import STARTUP_MIN, SlurmOptions
from bpbench.experiments.store.run_store import RunStore, atomic_write
from bpbench.experiments.store.safe_paths import check_writable

POLL_S = 2.0
# submitit asks Slurm for SIGUSR2 this long before the time limit (its checkpointing cue, unused
# here: runs ignore it). Short, so it never reaches a task still starting Python, whose default
# action on SIGUSR2 would be to die.
SIGNAL_S = 5
JOB_ID = re.compile(r"^\d{1,12}(_\d{1,9})?$")
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"}
ACTIVE |= {"RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


def run_on_slurm(spec_json: dict[str, Any], device: str, threads: int) -> tuple[list[dict], dict, Outcome]:
    """Body of an array task: one run's (rows, meta, outcome); the driver stores them. Ignores
    SIGUSR2, submitit's early warning of a time limit or preemption (it would end a run that cannot
    checkpoint itself early, in submitit's name): Slurm then ends the job, and its state says why."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    torch.set_num_threads(threads)
    spec = RunSpec.from_json(spec_json)
    return execute_unstored(spec, learner_registry(), task_registry(), torch.device(device), LoadedTasks(), print)


def slurm_state(job_id: str) -> tuple[str, str] | None:
    """(state, reason) of a Slurm job, or None when Slurm no longer knows it."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60)
    fields = dict(tok.split("=", 1) for tok in proc.stdout.split() if "=" in tok) if proc.returncode == 0 else {}
    if "JobState" in fields:
        return fields["JobState"], fields.get("Reason", "None")
    try:
        proc = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "State,Reason", "-j", job_id], capture_output=True, text=True, timeout=60
        )
    except OSError:
        return None
    line = proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""
    if not line:
        return None
    state, _, reason = line.partition("|")
    return (state.split() or ["UNKNOWN"])[0], reason or "None"


@dataclass
class SlurmExecutor:
    options: SlurmOptions = field(default_factory=SlurmOptions)
    jobs: int = 0  # array tasks running at once; 0: as many as Slurm allows
    threads: int = 0  # torch threads per run; 0: the CPUs asked per run
    poll: float = POLL_S

    def __post_init__(self) -> None:
        try:
            subprocess.run(["sinfo", "--version"], capture_output=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ValueError(f"executor = 'slurm': no Slurm here (sinfo: {exc}); run it on a Slurm login node") from exc

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        folder = store.root / "slurm"
        check_writable(store.root, folder / "submitted")
        (folder / "submitted").mkdir(parents=True, exist_ok=True)
        in_flight: dict[str, tuple[RunSpec, submitit.Job]] = {}
        with RunQueue(specs, store, on_event) as queue:
            while True:
                self._take(queue, store, in_flight)
                if not in_flight and not queue.waiting:
                    return
                for run_id, (spec, job) in list(in_flight.items()):
                    outcome = self._collect(spec, job, store)
                    if outcome is not None:
                        del in_flight[run_id]
                        queue.finish(run_id)
                        on_event(("done", run_id, outcome))
                        yield outcome
                time.sleep(self.poll)

    def _take(self, queue: RunQueue, store: RunStore, in_flight: dict[str, tuple[RunSpec, submitit.Job]]) -> None:
        """Claim what can start; re-attach to the jobs of earlier drivers, submit the rest as one array."""
        new = []
        while (spec := queue.take()) is not None:
            job = self._attach(spec, store)
            if job is None:
                new.append(spec)
            else:
                in_flight[spec.run_id] = (spec, job)
        if new:
            for spec, job in zip(new, self._submit(new, store), strict=True):
                in_flight[spec.run_id] = (spec, job)

    def _executor(self, store: RunStore, specs: list[RunSpec]) -> submitit.AutoExecutor:
        opts = self.options
        cpus = opts.cpus or self.threads or 1
        minutes = opts.time or math.ceil(max(s.timeout for s in specs) / 60) + STARTUP_MIN
        executor = submitit.AutoExecutor(folder=store.root / "slurm" / "%j", cluster="slurm")
        params: dict[str, Any] = {"timeout_min": minutes, "cpus_per_task": cpus, "name": f"bpbench-{store.root.name}"}
        params["slurm_array_parallelism"] = self.jobs or len(specs)
        params["slurm_signal_delay_s"] = SIGNAL_S
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
        if opts.gpus:
            params["gpus_per_node"] = opts.gpus
        executor.update_parameters(**params)
        return executor

    def _submit(self, specs: list[RunSpec], store: RunStore) -> list[submitit.Job]:
        threads = self.threads or self.options.cpus or 1
        device = "cuda" if self.options.gpus else "cpu"
        jobs = self._executor(store, specs).map_array(
            run_on_slurm, [s.to_json() for s in specs], [device] * len(specs), [threads] * len(specs)
        )
        for spec, job in zip(specs, jobs, strict=True):
            record = self._record(store, spec.run_id)
            atomic_write(record, lambda p, j=job: p.write_text(str(j.job_id)), store.root)
        return list(jobs)

    @staticmethod
    def _record(store: RunStore, run_id: str) -> Path:
        store.run_dir(run_id)  # a ValueError for anything that is not a run id
        return store.root / "slurm" / "submitted" / run_id

    def _attach(self, spec: RunSpec, store: RunStore) -> submitit.Job | None:
        """The job an earlier driver submitted for ``spec`` and that is still worth waiting for."""
        record = self._record(store, spec.run_id)
        if not record.is_file() or record.is_symlink():
            return None
        job_id = record.read_text().strip()
        stored = store.read_meta(store.meta_path(spec.run_id))
        if not JOB_ID.match(job_id) or (stored is not None and stored.get("slurm_job") == job_id):
            record.unlink()  # unusable, or its run was stored already (a leftover record)
            return None
        job: submitit.Job = submitit.SlurmJob(folder=store.root / "slurm" / "%j", job_id=job_id)
        if job.paths.result_pickle.exists() or slurm_state(job_id) is not None:
            return job  # finished with a result, queued, running, or ended by Slurm (recorded as such)
        record.unlink()  # Slurm forgot it and it left nothing: run it again
        return None

    def _collect(self, spec: RunSpec, job: submitit.Job, store: RunStore) -> Outcome | None:
        """Store a finished job's run, or record why it has none; None while it is queued or running."""
        if not job.paths.result_pickle.exists():
            state = slurm_state(str(job.job_id))
            if state is not None and state[0] in ACTIVE:
                return None
            if job.paths.result_pickle.exists():  # finished between the two looks
                return self._collect(spec, job, store)
            what = f"{state[0]} ({state[1]})" if state else "its job is unknown to Slurm and left no result"
            outcome = record_lost(spec, store, torch.device("cpu"), f"killed by Slurm: {what} (job {job.job_id})")
        else:
            try:
                rows, meta, outcome = job.result()
            except Exception as exc:  # the task raised outside the run (bpbench missing on the node, say)
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                outcome = record_lost(spec, store, torch.device("cpu"), f"the Slurm job {job.job_id} failed: {last}")
            else:
                store.write(spec.run_id, rows, {**meta, "slurm_job": str(job.job_id)})
        self._record(store, spec.run_id).unlink(missing_ok=True)
        return outcome
