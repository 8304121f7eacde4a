"""Executors: where runs execute. The seam for parallel and distributed sweeps.

An executor takes run specs and an output store and yields an ``Outcome`` per run it
executes, as runs finish; each run is stored atomically as soon as it ends (by the process
that ran it; for Ray, by the driver). Runs another driver on the same folder holds are
left to it (``RunQueue``), reported as ``("elsewhere", run_id, status)`` events.

- ``InlineExecutor``: in this process, one run after another (debugging, notebooks).
- ``ProcessExecutor``: ``jobs`` worker processes, ``threads`` torch threads each (default 1:
  a run's wall time then measures the learner, not contention between threads; jobs x threads
  <= cores avoids OpenMP spin contention). A run that outlives its ``timeout`` (``schedule.timeout``)
  has its worker killed and is recorded as failed, "timed out after N s"; the study goes on.
  A worker whose driver died exits without storing anything: its run is simply missing (a
  resumed or surviving driver runs it), never recorded as failed because its pipe broke. Workers are fresh interpreters
  (``subprocess``) that import bpbench only, never the caller's ``__main__``: a script calling
  ``bpbench.run`` needs no ``if __name__ == "__main__":`` guard, and its top-level code runs
  once (multiprocessing's spawn would re-run it in every worker). A worker that dies (killed,
  out of memory, segfault) loses only the run it held: it is recorded as failed and a
  fresh worker takes the remaining runs. With ``device="cuda"`` worker k uses GPU k mod G
  (G GPUs): ``jobs`` <= G gives each worker a GPU of its own, more workers share them evenly.
- ``RayExecutor`` (``experiments/schedule/ray_pool.py``, needs ``bpbench[ray]``): each run is a
  Ray task on a local Ray instance or an existing cluster.

``make_executor(name, ...)`` builds one by name (the CLI's and the Python
API's ``executor``).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Protocol

import torch

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.runner import LoadedTasks
from bpbench.experiments.run.warmup import warm_up
from bpbench.experiments.schedule.execute import Event, Outcome, execute, execute_unstored, record_lost
from bpbench.experiments.schedule.queue import RunQueue
from bpbench.experiments.schedule.slurm_options import SlurmOptions
from bpbench.experiments.store.run_store import RunStore


class Executor(Protocol):
    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        """Execute ``specs`` (those this driver claims), store each, report progress events,
        yield outcomes as they finish."""
        ...


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when present, else cpu; "cpu" | "cuda" | "cuda:N" as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device = {name!r}: allowed: auto, cpu, cuda, cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {name!r}: CUDA is not available here; allowed: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device = {name!r}: allowed: auto, cpu, cuda, cuda:N")
    return device


@dataclass
class InlineExecutor:
    device: str = "auto"

    def __post_init__(self) -> None:
        resolve_device(self.device)  # a bad device fails here, before any work

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        device = resolve_device(self.device)
        learners, tasks, cache = learner_registry(), task_registry(), LoadedTasks()
        warm_up(device)
        with RunQueue(specs, store, on_event) as queue:
            while queue.waiting:
                spec = queue.take()
                if spec is None:  # the rest is held by another driver: wait for it to finish or die
                    time.sleep(queue.poll)
                    continue
                outcome = execute(spec, store, learners, tasks, device, cache, on_event)
                queue.finish(spec.run_id)
                on_event(("done", spec.run_id, outcome))
                yield outcome


def _exit_with_parent(parent: int) -> None:
    """End this worker soon after the driver that started it dies (a SIGKILLed driver cannot tell
    it), so a driver taking over the dead one's claims never races a stray worker on a run."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _orphaned() -> None:
    """This worker's driver is gone (its pipe broke): exit at once, storing nothing."""
    os._exit(3)


def _send(conn: Connection, event: Event) -> None:
    """Send ``event`` to the driver; a broken pipe means the driver died: exit, store nothing."""
    try:
        conn.send(event)
    except OSError:  # BrokenPipeError, ConnectionResetError
        _orphaned()


def _worker(conn: Connection, root: str, device_name: str, threads: int, driver: int) -> None:
    """Worker process of driver pid ``driver``: take specs from ``conn`` until None, run and store each."""
    threading.Thread(target=_exit_with_parent, args=(driver,), daemon=True).start()
    torch.set_num_threads(threads)
    store, device = RunStore(Path(root)), resolve_device(device_name)
    learners, tasks, cache = learner_registry(), task_registry(), LoadedTasks()
    warm_up(device)
    while True:
        data = conn.recv()
        if data is None:
            # Every run is stored (atomically, files closed): skip the interpreter's teardown of
            # torch and friends, which takes about a second the driver would wait for.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        spec = RunSpec.from_json(data)
        _send(conn, ("start", spec.run_id))  # the run's clock starts now, not while the worker was starting up
        rows, meta, outcome = execute_unstored(
            spec, learners, tasks, device, cache, lambda e: _send(conn, e), store.root
        )
        if os.getppid() != driver:  # the driver died during the run: its claim is void, store nothing
            _orphaned()
        store.write(spec.run_id, rows, meta)
        _send(conn, ("done", spec.run_id, outcome))


def worker_main(args: dict) -> None:
    """Entry of a worker subprocess (``_BOOT``): ``args`` = {fd: its end of the driver's pipe,
    root, device, threads, driver}."""
    _worker(Connection(args["fd"]), args["root"], args["device"], args["threads"], args["driver"])


# The worker interpreter's command: the driver's import path, then worker_main. (``-c``, so the
# caller's __main__ script is never imported in a worker.)
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from bpbench.experiments.schedule.process_pool import worker_main; worker_main(json.loads(sys.argv[2]))"
)


def _start_worker(root: str, device: str, threads: int) -> tuple[subprocess.Popen, Connection]:
    """A fresh worker interpreter and the driver's end of a duplex pipe to it."""
    ours, theirs = mp.Pipe()
    args = {"fd": theirs.fileno(), "root": root, "device": device, "threads": threads, "driver": os.getpid()}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(sys.path), json.dumps(args)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    finally:
        theirs.close()  # the worker holds its own copy: its end closes (EOF here) when it exits
    return proc, ours


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    slot: int  # index into the executor's worker devices
    spec: RunSpec | None = None
    started: float = 0.0  # time.monotonic() when its run started (until then: when given it, plus STARTUP_S)
    stopping: bool = False  # told to exit (sent None)


@dataclass
class _Pool:
    """A process executor's workers: the results folder they store into, each slot's device, threads."""

    root: str
    devices: list[str]  # one per worker slot
    threads: int
    workers: list[_Worker] = field(default_factory=list)

    def start(self, slot: int, spec: RunSpec) -> None:
        """Start a worker in ``slot`` and give it ``spec``."""
        proc, conn = _start_worker(self.root, self.devices[slot], self.threads)
        self.workers.append(_Worker(proc, conn, slot))
        self.give(self.workers[-1], spec)

    @staticmethod
    def give(worker: _Worker, spec: RunSpec) -> None:
        worker.spec, worker.started = spec, time.monotonic() + STARTUP_S
        worker.conn.send(spec.to_json())


def worker_devices(name: str, jobs: int) -> list[str]:
    """The device of each of ``jobs`` workers: with plain "cuda" (or "auto" on a GPU machine)
    worker k gets GPU k mod G of the G visible GPUs; otherwise every worker gets ``name``'s device."""
    device = resolve_device(name)
    if device.type != "cuda" or device.index is not None:
        return [str(device)] * jobs
    # torch's stub types device.index as int, but it is None for a bare "cuda": this line is reached
    gpus = torch.cuda.device_count()  # type: ignore[unreachable]
    return [f"cuda:{k % gpus}" for k in range(jobs)]


@dataclass
class ProcessExecutor:
    jobs: int = 0  # 0: one per core
    threads: int = 0  # 0: one torch thread per run
    device: str = "auto"

    def __post_init__(self) -> None:
        resolve_device(self.device)  # a bad device fails here, before any work

    def plan(self, n_runs: int) -> tuple[int, int]:
        """(workers, torch threads per worker) for ``n_runs`` runs."""
        cores = os.cpu_count() or 1
        jobs = self.jobs or cores
        jobs = max(1, min(jobs, n_runs))
        threads = self.threads or 1
        return jobs, threads

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        jobs, threads = self.plan(len(specs))
        pool = _Pool(str(store.root), worker_devices(self.device, jobs), threads)
        with RunQueue(specs, store, on_event) as queue:
            try:
                while True:
                    busy = self._hand_out(pool, queue)
                    if not busy and not queue.waiting:
                        return
                    self._wait(busy, queue)
                    for worker in busy:
                        outcome = self._settle(worker, pool.workers, store, queue, on_event)
                        if outcome is not None:
                            yield outcome
            finally:
                self._shut_down(pool.workers)

    def _hand_out(self, pool: _Pool, queue: RunQueue) -> list[_Worker]:
        """Hand claimable runs to idle workers, starting workers (up to jobs) as needed; tell idle
        workers to exit once nothing is left to hand out. Returns the workers running a run."""
        idle = [w for w in pool.workers if w.spec is None and not w.stopping]
        free_slots = sorted(set(range(len(pool.devices))) - {w.slot for w in pool.workers})
        while (idle or free_slots) and (spec := queue.take()) is not None:
            if idle:
                pool.give(idle.pop(), spec)
            else:
                pool.start(free_slots.pop(0), spec)
        if not queue.waiting:  # nothing left to hand out: idle workers exit now, not at the end
            for worker in idle:
                self._stop(worker)
        return [w for w in pool.workers if w.spec is not None]

    @staticmethod
    def _wait(busy: list[_Worker], queue: RunQueue) -> None:
        """Wait for a busy worker's message, its run's timeout, or (while runs are held by another
        driver) the next look at them. A worker that dies closes its end of the pipe: readable."""
        deadline = min((w.started + w.spec.timeout for w in busy if w.spec), default=math.inf)
        limit = min(queue.poll if queue.waiting else math.inf, max(0.0, deadline - time.monotonic()))
        wait([w.conn for w in busy], timeout=None if math.isinf(limit) else limit + 0.05)

    def _settle(
        self,
        worker: _Worker,
        workers: list[_Worker],
        store: RunStore,
        queue: RunQueue,
        on_event: Callable[[Event], None],
    ) -> Outcome | None:
        """The outcome of ``worker``'s run once it is done, timed out (worker killed) or lost with
        its worker (recorded as failed; the worker leaves ``workers``); None while it runs."""
        finished, closed = self._drain(worker, on_event)
        if finished is not None:
            queue.finish(finished.run_id)
            worker.spec = None
            return finished
        if worker.spec is None:
            return None
        if not closed and time.monotonic() - worker.started > worker.spec.timeout:
            lost = self._time_out(worker, store)
        elif closed:  # the worker died with its run unfinished
            code = _exit_code(worker.process)
            reason = f"worker process died (exit code {code}) while running this run"
            lost = record_lost(worker.spec, store, torch.device("cpu"), reason)
            worker.conn.close()
        else:
            return None
        queue.finish(lost.run_id)
        on_event(("done", lost.run_id, lost))
        workers.remove(worker)
        return lost

    def _shut_down(self, workers: list[_Worker]) -> None:
        """Stop every worker: idle ones are asked first (so they all exit at once), busy ones terminated."""
        for worker in workers:
            if worker.process.poll() is None and worker.spec is None:
                self._stop(worker)
        for worker in workers:
            if worker.stopping:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=5)
            if worker.process.poll() is None:
                worker.process.terminate()
                worker.process.wait()
            worker.conn.close()

    @staticmethod
    def _time_out(worker: _Worker, store: RunStore) -> Outcome:
        """Kill a worker whose run outlived its timeout; record the run as failed, saying so."""
        assert worker.spec is not None
        worker.process.kill()
        worker.process.wait()
        worker.conn.close()
        reason = f"timed out after {worker.spec.timeout:g} s (schedule.timeout): its worker was killed"
        return record_lost(worker.spec, store, torch.device("cpu"), reason)

    @staticmethod
    def _stop(worker: _Worker) -> None:
        """Tell an idle worker to exit (once)."""
        if not worker.stopping:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it has exited already
                worker.conn.send(None)
            worker.stopping = True

    @staticmethod
    def _drain(worker: _Worker, on_event: Callable[[Event], None]) -> tuple[Outcome | None, bool]:
        """Forward the worker's queued events: (its outcome once its run is done, whether its pipe
        has closed, i.e. the worker exited)."""
        try:
            while worker.conn.poll():
                event = worker.conn.recv()
                if event[0] == "start":
                    worker.started = time.monotonic()
                    continue
                on_event(event)
                if event[0] == "done":
                    return event[2], False
        except (EOFError, ConnectionResetError, OSError):
            return None, True
        return None, False


def _exit_code(process: subprocess.Popen) -> int:
    """The exit code of a worker whose pipe has closed: it is exiting, or hung in teardown
    (then it is killed after a few seconds)."""
    try:
        return process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


STARTUP_S = 300.0  # a new worker's start-up (importing torch, warming up) is not counted in its run's timeout
EXECUTORS = ("process", "inline", "ray", "slurm")
RAY_MISSING = 'executor = "ray" needs Ray, which is not installed here: pip install "bpbench[ray]"'
SLURM_MISSING = 'executor = "slurm" needs submitit, which is not installed here: pip install "bpbench[slurm]"'


def make_executor(
    name: str,
    *,
    jobs: int = 0,
    threads: int = 0,
    device: str = "auto",
    address: str | None = None,
    slurm: SlurmOptions | None = None,
) -> Executor:
    """The executor called ``name`` (one of ``EXECUTORS``); a clear ValueError otherwise.

    ``address`` (ray only): a Ray cluster to join ("HOST:PORT", "auto"); None starts a local Ray.
    ``slurm`` (slurm only): what each run's array task asks for.
    """
    if name not in EXECUTORS:
        raise ValueError(f"executor = {name!r}: allowed: {', '.join(EXECUTORS)}")
    if address is not None and name != "ray":
        raise ValueError(f"address = {address!r} is for the ray executor only (executor = {name!r})")
    if slurm is not None and name != "slurm":
        raise ValueError(f"slurm options are for the slurm executor only (executor = {name!r})")
    if name == "inline":
        return InlineExecutor(device)
    if name == "process":
        return ProcessExecutor(jobs=jobs, threads=threads, device=device)
    if name == "slurm":
        return _slurm_executor(jobs, threads, device, slurm or SlurmOptions())
    try:
        import ray  # noqa: F401  (the optional extra)
    except ImportError as exc:
        raise ValueError(f"{RAY_MISSING} ({exc})") from exc
    from bpbench.experiments.schedule.ray_pool import RayExecutor

    return RayExecutor(address=address, jobs=jobs, threads=threads, device=device)


def _slurm_executor(jobs: int, threads: int, device: str, options: SlurmOptions) -> Executor:
    """The Slurm executor (submitit); its runs use "cuda" when ``options.gpus`` asks for GPUs."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device = {device!r}: allowed with the slurm executor: auto, cpu, cuda (slurm gpus=N)")
    if device == "cuda" and not options.gpus:
        raise ValueError("device = 'cuda' with the slurm executor needs GPUs per run: --slurm gpus=1")
    try:
        import submitit  # noqa: F401  (the optional extra)
    except ImportError as exc:
        raise ValueError(f"{SLURM_MISSING} ({exc})") from exc
    from bpbench.experiments.schedule.slurm_pool import SlurmExecutor

    return SlurmExecutor(options=options, jobs=jobs, threads=threads)
