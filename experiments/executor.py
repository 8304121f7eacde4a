"""Executors: where runs execute. The seam for parallel and distributed sweeps.

An executor takes run specs and an output store and yields an ``Outcome`` per run as
runs finish; each run is stored by whoever ran it, atomically, as soon as it ends.

- ``InlineExecutor``: in this process, one run after another (debugging, notebooks).
- ``ProcessExecutor``: ``jobs`` worker processes, ``threads`` torch threads each
  (jobs x threads <= cores avoids OpenMP spin contention). A worker that dies (killed,
  out of memory, segfault) loses only the run it held: it is recorded as failed and a
  fresh worker takes the remaining runs.

``make_executor(name, ...)`` builds one by name (the CLI's and the Python API's ``executor``).
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Protocol

import torch

from bpbench.experiments.execute import Event, Outcome, execute, record_lost
from bpbench.experiments.registry import learner_registry, task_registry
from bpbench.experiments.runner import TaskCache
from bpbench.experiments.spec import RunSpec
from bpbench.experiments.store import RunStore


class Executor(Protocol):
    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        """Execute ``specs``, store each, report progress events, yield outcomes as they finish."""
        ...


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when present, else cpu; "cpu" | "cuda" | "cuda:N" as given."""
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

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        device = resolve_device(self.device)
        learners, tasks, cache = learner_registry(), task_registry(), TaskCache()
        for spec in specs:
            outcome = execute(spec, store, learners, tasks, device, cache, on_event)
            on_event(("done", spec.run_id, outcome))
            yield outcome


def _worker(conn: Connection, root: str, device_name: str, threads: int) -> None:
    """Worker process: take specs from ``conn`` until None, run and store each."""
    torch.set_num_threads(threads)
    store, device = RunStore(Path(root)), resolve_device(device_name)
    learners, tasks, cache = learner_registry(), task_registry(), TaskCache()
    while True:
        data = conn.recv()
        if data is None:
            return
        spec = RunSpec.from_json(data)
        outcome = execute(spec, store, learners, tasks, device, cache, conn.send)
        conn.send(("done", spec.run_id, outcome))


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    spec: RunSpec | None = None


@dataclass
class ProcessExecutor:
    jobs: int = 0  # 0: one per core
    threads: int = 0  # 0: cores // jobs
    device: str = "auto"

    def plan(self, n_runs: int) -> tuple[int, int]:
        """(workers, torch threads per worker) for ``n_runs`` runs."""
        cores = os.cpu_count() or 1
        jobs = self.jobs or cores
        jobs = max(1, min(jobs, n_runs))
        threads = self.threads or max(1, cores // jobs)
        return jobs, threads

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        resolve_device(self.device)  # fail before starting workers
        jobs, threads = self.plan(len(specs))
        ctx = mp.get_context("spawn")
        pending = deque(specs)
        workers: list[_Worker] = []

        def start() -> _Worker:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, str(store.root), self.device, threads), daemon=True)
            proc.start()
            child.close()
            return _Worker(proc, parent)

        def assign(worker: _Worker) -> None:
            if pending:
                worker.spec = pending.popleft()
                worker.conn.send(worker.spec.to_json())
            else:
                worker.spec = None
                worker.conn.send(None)

        try:
            for _ in range(jobs):
                workers.append(start())
                assign(workers[-1])
            while any(w.spec is not None for w in workers):
                busy = [w for w in workers if w.spec is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    finished = self._drain(worker, on_event)
                    if finished is not None:
                        yield finished
                        assign(worker)
                    elif not worker.process.is_alive() and worker.spec is not None:
                        code = worker.process.exitcode
                        reason = f"worker process died (exit code {code}) while running this run"
                        lost = record_lost(worker.spec, store, torch.device("cpu"), reason)
                        on_event(("done", lost.run_id, lost))
                        yield lost
                        workers.remove(worker)
                        if pending:
                            replacement = start()
                            workers.append(replacement)
                            assign(replacement)
        finally:
            for worker in workers:
                if worker.process.is_alive():
                    if worker.spec is None:
                        worker.process.join(timeout=5)
                    if worker.process.is_alive():
                        worker.process.terminate()
                        worker.process.join()

    @staticmethod
    def _drain(worker: _Worker, on_event: Callable[[Event], None]) -> Outcome | None:
        """Forward the worker's queued events; return its outcome once its run is done."""
        try:
            while worker.conn.poll():
                event = worker.conn.recv()
                on_event(event)
                if event[0] == "done":
                    return event[2]
        except (EOFError, ConnectionResetError, OSError):
            return None
        return None


EXECUTORS = ("process", "inline")


def make_executor(name: str, *, jobs: int = 0, threads: int = 0, device: str = "auto",
                  address: str | None = None) -> Executor:
    """The executor called ``name`` (one of ``EXECUTORS``); a clear ValueError otherwise."""
    if name == "inline":
        return InlineExecutor(device)
    if name == "process":
        return ProcessExecutor(jobs=jobs, threads=threads, device=device)
    raise ValueError(f"executor = {name!r}: allowed: {', '.join(EXECUTORS)}")
