"""The Ray executor: each run is one Ray task, on a local Ray instance or an existing cluster.

- ``address=None`` starts a private local Ray instance (stopped at the end); an address
  ("HOST:PORT" of a head started with ``ray start --head``, or "auto") joins that cluster. If
  this process is already connected to Ray (``ray.init`` in a notebook), that connection is used.
- A run asks for ``num_cpus`` = its torch threads and, on CUDA, ``num_gpus`` = 1 (a GPU of its
  own), or 1/k of one when ``jobs`` asks for k times more concurrent runs than the cluster has
  GPUs. Ray sets each task's visible GPUs, so "cuda" inside a task is the GPU Ray gave it.
- Workers need no shared file system: a task returns its rows and meta, and the driver (this
  process) stores them atomically as they come back. Runs are claimed (``RunQueue``) before
  they are submitted, and at most as many runs are in flight as can execute at once, so
  another driver on the same folder gets a fair share.
- Faults: a worker process that dies (killed, out of memory) or a node that is lost makes Ray
  run the task again, once (``RETRIES``); a second loss records the run as failed with Ray's
  reason. A run that raises or diverges is recorded by the runner as failed, never retried.
  Ray's memory monitor (which kills a task before the kernel's OOM killer does) retries by its
  own count, ``RAY_task_oom_retries`` in the driver's environment (unbounded by default).
  A Ray worker process keeps its loaded tasks between runs, as the process workers do.
- A run still in flight ``timeout`` seconds (``schedule.timeout``) after it was submitted is
  cancelled (``ray.cancel(force=True)`` kills its worker process) and recorded as failed,
  "timed out after N s"; the study goes on.

Every node needs the same bpbench (and plugin packages) installed: tasks import it there.
"""

from __future__ import annotations

import functools
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray
import torch

from bpbench.experiments.plan.registry import Registry, learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.run.runner import LoadedTasks
from bpbench.experiments.run.warmup import warm_up
from bpbench.experiments.schedule.execute import Event, Outcome, execute_unstored, record_lost
from bpbench.experiments.schedule.process_pool import resolve_device
from bpbench.experiments.schedule.queue import RunQueue
from bpbench.experiments.store.run_store import RunStore

RETRIES = 1  # times Ray re-runs a task whose worker process or node died
RESIZE_S = 10.0  # how often the number of concurrent runs follows the cluster's size (jobs = 0)
DEVICES = ("auto", "cpu", "cuda")


@functools.cache
def _worker_context() -> tuple[Registry, Registry, LoadedTasks]:
    """This Ray worker process's registries and loaded tasks, kept between the runs it executes."""
    return learner_registry(), task_registry(), LoadedTasks()


@functools.cache
def _warmed(device: str) -> None:
    """This Ray worker process's one-time start-up costs on ``device``, paid before its first run there."""
    warm_up(resolve_device(device))


def run_on_worker(
    spec_json: dict[str, Any], device: str, threads: int
) -> tuple[list[dict[str, Any]], dict[str, Any], Outcome]:
    """Body of a Ray task: one run's (rows, meta, outcome); the driver stores them."""
    torch.set_num_threads(threads)
    learners, tasks, cache = _worker_context()
    _warmed(device)
    return execute_unstored(
        RunSpec.from_json(spec_json), learners, tasks, resolve_device(device), cache, lambda event: None
    )


_remote_run = ray.remote(run_on_worker)


def reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast (ValueError) when nothing listens at a "HOST:PORT" address: Ray itself retries
    for many minutes. Other forms ("auto", "ray://...") are left to Ray."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(
            f"address = {address!r}: no Ray cluster answers there ({exc}); start one with "
            "`ray start --head` or leave out --address for a local Ray"
        ) from exc


def gpu_share(jobs: int, gpus: float) -> float:
    """GPUs each run asks for: a whole one, or 1/k of one when ``jobs`` concurrent runs need k per GPU."""
    return 1.0 if not jobs or jobs <= gpus else 1.0 / math.ceil(jobs / gpus)


@dataclass(frozen=True)
class RayPlan:
    device: str  # "cpu" | "cuda", as each task sees it
    gpus_per_run: float
    threads: int


@dataclass
class RayExecutor:
    address: str | None = None  # None: a local Ray instance
    jobs: int = 0  # concurrent runs; 0: as many as the cluster's CPUs (and GPUs) allow
    threads: int = 0  # torch threads = CPUs asked per run; 0: 1
    device: str = "auto"  # auto (cuda when the cluster has GPUs) | cpu | cuda

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(
                f"device = {self.device!r}: allowed with the ray executor: {', '.join(DEVICES)} "
                "(Ray gives each run its GPU)"
            )
        if self.address is not None and not ray.is_initialized():
            reachable(self.address)  # before any work

    def run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        started = self._connect()
        try:
            yield from self._run(specs, store, on_event)
        finally:
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Connect to Ray unless this process already is; True when we connected (and so disconnect)."""
        if ray.is_initialized():
            return False
        quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if self.address is None:  # a local instance sized to what was asked (all cores by default)
            cpus = self.jobs * (self.threads or 1) if self.jobs else None
            ray.init(address="local", include_dashboard=False, num_cpus=cpus, **quiet)
        else:
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, ray.exceptions.AuthenticationError) as exc:  # no cluster there, or no token
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"address = {self.address!r}: cannot join a Ray cluster there: {reason}") from exc
        return True

    def plan(self) -> RayPlan:
        """Device, GPUs and CPUs per run, checked against the cluster (a clear ValueError if it cannot serve them)."""
        threads = self.threads or 1
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
        if not any(r.get("CPU", 0) >= threads for r in nodes):
            raise ValueError(
                f"threads = {threads}: no node of the Ray cluster has that many CPUs "
                f"(largest: {max((r.get('CPU', 0) for r in nodes), default=0):g})"
            )
        gpus = ray.cluster_resources().get("GPU", 0)
        if self.device == "cuda" and gpus == 0:
            raise ValueError("device = 'cuda': the Ray cluster has no GPUs; allowed: auto, cpu")
        device = "cuda" if self.device == "cuda" or (self.device == "auto" and gpus > 0) else "cpu"
        return RayPlan(device, gpu_share(self.jobs, gpus) if device == "cuda" else 0.0, threads)

    def slots(self, plan: RayPlan) -> int:
        """How many runs may be in flight: ``jobs``, or what the cluster can execute at once."""
        if self.jobs:
            return self.jobs
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 0) // plan.threads)
        if plan.gpus_per_run:
            slots = min(slots, int(resources.get("GPU", 0) / plan.gpus_per_run))
        return max(1, slots)

    def _run(self, specs: list[RunSpec], store: RunStore, on_event: Callable[[Event], None]) -> Iterator[Outcome]:
        plan = self.plan()
        task = _remote_run.options(
            num_cpus=plan.threads, num_gpus=plan.gpus_per_run, max_retries=RETRIES, retry_exceptions=False
        )
        in_flight: dict[ray.ObjectRef, RunSpec] = {}
        submitted: dict[ray.ObjectRef, float] = {}
        slots, sized = self.slots(plan), time.monotonic()
        with RunQueue(specs, store, on_event) as queue:
            try:
                while True:
                    if not self.jobs and time.monotonic() - sized > RESIZE_S:
                        slots, sized = self.slots(plan), time.monotonic()
                    while len(in_flight) < slots and (spec := queue.take()) is not None:
                        ref = task.remote(spec.to_json(), plan.device, plan.threads)
                        in_flight[ref], submitted[ref] = spec, time.monotonic()
                    if not in_flight:
                        if not queue.waiting:
                            return
                        time.sleep(queue.poll)  # the rest is held by another driver
                        continue
                    deadline = min(submitted[r] + in_flight[r].timeout for r in in_flight)
                    ready, _ = ray.wait(
                        list(in_flight),
                        num_returns=1,
                        timeout=max(0.0, min(queue.poll if queue.waiting else RESIZE_S, deadline - time.monotonic())),
                    )
                    now = time.monotonic()
                    expired = [r for r in in_flight if r not in ready and now - submitted[r] > in_flight[r].timeout]
                    for ref in [*ready, *expired]:
                        spec = in_flight.pop(ref)
                        del submitted[ref]
                        if ref in ready:
                            outcome = self._store(ref, spec, store, plan)
                        else:
                            ray.cancel(ref, force=True)
                            outcome = record_lost(
                                spec,
                                store,
                                torch.device("cpu"),
                                f"timed out after {spec.timeout:g} s (schedule.timeout): its Ray task was cancelled",
                            )
                        queue.finish(spec.run_id)
                        on_event(("done", spec.run_id, outcome))
                        yield outcome
            finally:
                for ref in in_flight:
                    ray.cancel(ref, force=True)

    @staticmethod
    def _store(ref: ray.ObjectRef, spec: RunSpec, store: RunStore, plan: RayPlan) -> Outcome:
        """Store a finished task's run, or record why it has none."""
        try:
            rows, meta, outcome = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the task raised outside the run (e.g. bpbench missing there)
            reason = f"the Ray task failed: {str(exc).strip().splitlines()[-1]}"
        except ray.exceptions.RayError as exc:  # worker process or node died, also on the retry
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"Ray worker died while running this run (retried {RETRIES}x): {type(exc).__name__}: {first}"
        else:
            store.write(spec.run_id, rows, meta)
            return outcome
        return record_lost(spec, store, torch.device("cpu"), reason)
