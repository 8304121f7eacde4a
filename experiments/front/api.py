"""``bpbench.run``: run a study from Python, with the validation and errors of ``bpbench run``.

    import bpbench
    results = bpbench.run("quick", overrides={"budget.epochs": 2, "seeds": 1})
    results.summary          # pandas DataFrame, one row per run
    print(results.table())   # the table ``bpbench run`` prints

The command line's ``run`` is this function plus printing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bpbench.experiments.front.results import Results
from bpbench.experiments.front.tracking.base import parse_targets
from bpbench.experiments.front.tracking.mirror import Mirror, study_artifacts
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.plan.study import Overrides, Study, expand, load_study, study_references
from bpbench.experiments.schedule.execute import Event, Outcome
from bpbench.experiments.schedule.process_pool import Executor, make_executor
from bpbench.experiments.schedule.progress import Progress
from bpbench.experiments.schedule.slurm_options import slurm_options
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.study_record import admit


def _count(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{name} = {value!r}: expected an integer >= 0 (0: automatic)")
    return value


def trial_plan_of(
    study: str | Path | Mapping[str, Any], overrides: Overrides | None = None, name: str | None = None
) -> str | None:
    """A tuned study's trial plan (validated as ``run`` validates it), without running anything;
    None for a study without tuning (``plan_runs`` lists its runs)."""
    plan = load_study(study, overrides, learner_registry(), task_registry(), name=name)
    if plan.tuning is None:
        return None
    from bpbench.experiments.schedule.tuning import trial_plan

    return "\n".join(trial_plan(plan.runs, plan.tuning, learner_registry()))


def plan_runs(
    study: str | Path | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    overrides: Overrides | None = None,
    name: str | None = None,
) -> tuple[Path, list[tuple[RunSpec, str]]]:
    """What ``run`` would do, without running or writing anything: (its results folder, each
    expanded run with its state there: "done", "failed" (would run again) or "to run")."""
    plan = load_study(study, overrides, learner_registry(), task_registry(), name=name)
    root = Path(out) if out is not None else Path("bpbench-out") / plan.name
    store = RunStore(root)
    states = {"ok": "done", "failed": "failed", None: "to run"}
    return root, [(spec, states[store.status(spec.run_id) if store.runs_dir.is_dir() else None]) for spec in plan.runs]


def run(
    study: str | Path | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    overrides: Overrides | None = None,
    jobs: int = 0,
    threads: int = 0,
    device: str = "auto",
    executor: str = "process",
    address: str | None = None,
    progress: bool = True,
    name: str | None = None,
    extend: bool = False,
    track: Sequence[str] | str | None = None,
    slurm: Mapping[str, Any] | Sequence[str] | None = None,
) -> Results:
    """Run a study and return its ``Results``; runs already complete in ``out`` are skipped.

    study: a built-in study name (``bpbench list``), a path to a TOML study file, or a dict
        with the TOML file's structure (named ``name``, default "study").
    out: the results folder (default ``bpbench-out/STUDY``).
    overrides: ``{"budget.epochs": 2}`` or ``["budget.epochs=2"]``; the meaning of ``--set``.
    jobs, threads: worker processes (0: one per core) and torch threads per run (0: one, so that
        timings measure the learner, not contention between threads).
    extend: the folder holds this study with another definition: add the new definition's runs
        (grid points, seeds) instead of stopping; refused when it changes a recorded run.
    device: auto | cpu | cuda | cuda:N.  executor: where runs execute: "process" (local worker
        processes), "inline" (this process), "ray" (Ray tasks; ``address``: the cluster to join),
        "slurm" (a Slurm job array through submitit; ``slurm``: its options, over the study's
        ``[slurm]`` table: ``{"partition": "gpu", "time": 60}`` or ``["time=60"]``).
    track: mirror every run to ``"mlflow[:URI]"``, ``"tensorboard[:DIR]"``, ``"wandb[:PROJECT]"``
        (several allowed; added to the study's ``[tracking]`` table); a tracking failure is a warning.
    progress: show progress on stderr.

    Everything is validated before any run starts; bad input raises ``ConfigError`` whose
    message is the line ``bpbench run`` prints. A run that fails is recorded as failed and
    the others go on: look at ``Results.summary``'s status and error.
    """
    jobs, threads = _count("jobs", jobs), _count("threads", threads)
    plan = load_study(study, overrides, learner_registry(), task_registry(), name=name)
    targets = parse_targets(track, plan.raw.get("tracking"))
    runner = _runner(plan, executor, slurm, jobs=jobs, threads=threads, device=device, address=address)
    root = Path(out) if out is not None else Path("bpbench-out") / plan.name
    store = _admitted_store(plan, root, extend)
    mirror = Mirror(targets, root, plan.name) if targets else None
    start = time.perf_counter()
    ran, planned, elsewhere = _execute(plan, store, runner, progress, mirror)
    if mirror is not None:
        mirror.finish(lambda folder: study_artifacts(root, folder))
    return Results(root, tuple(ran), time.perf_counter() - start, study_references(plan.raw), elsewhere, planned)


def _runner(
    plan: Study,
    executor: str,
    slurm: Mapping[str, Any] | Sequence[str] | None,
    *,
    jobs: int,
    threads: int,
    device: str,
    address: str | None,
) -> Executor:
    """``run``'s executor (slurm: its options over the study's ``[slurm]`` table); a bad device,
    executor name or address raises ``ConfigError``."""
    try:  # the executor checks the device (where its runs will execute), executor name and address
        options = slurm_options(plan.raw.get("slurm"), slurm) if executor == "slurm" or slurm else None
        return make_executor(executor, jobs=jobs, threads=threads, device=device, address=address, slurm=options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _admitted_store(plan: Study, root: Path, extend: bool) -> RunStore:
    """The store at ``root``, checked (no symlinked run folder) and admitted for ``plan``."""
    store = RunStore(root)
    linked = [str(store.run_dir(s.run_id)) for s in plan.runs if store.linked(s.run_id)]
    if linked or (root / "claims").is_symlink():
        raise ConfigError(
            f"{(linked or [str(root / 'claims')])[0]} is a symbolic link: bpbench writes only inside "
            f"{str(root)!r}; remove it and run again"
        )
    admit(
        store,
        plan.name,
        plan.raw,
        plan.runs,
        extend,
        lambda recorded: expand(plan.name, recorded, learner_registry(), task_registry()).runs,
    )
    return store


def _execute(
    plan: Study, store: RunStore, runner: Any, progress: bool, mirror: Mirror | None
) -> tuple[list[Outcome], tuple[str, ...], int]:
    """Run ``plan``'s runs not yet ok in ``store``: (outcomes here, run ids planned, runs finished
    by another driver). Each run stored here is mirrored to the trackers as it finishes."""
    todo = [s for s in plan.runs if store.status(s.run_id) != "ok"]
    show = Progress(todo, skipped=len(plan.runs) - len(todo)) if progress and plan.tuning is None else None
    elsewhere = 0

    def on_event(event: Event) -> None:
        nonlocal elsewhere
        elsewhere += event[0] == "elsewhere"  # another driver on the same folder finished this run
        if show is not None:
            show(event)
        if mirror is not None and event[0] == "done":
            mirror.run(event[1])

    ran: list[Outcome] = []
    planned = tuple(s.run_id for s in plan.runs)  # a tuned study: the runs its protocol asked for
    try:
        if plan.tuning is not None:  # the protocol draws its runs round by round (schedule/tuning.py)
            from bpbench.experiments.front.tuned_run import run_tuned_study  # optuna: only for tuned studies

            outcomes, asked = run_tuned_study(plan, store, runner, on_event, progress)
            ran.extend(outcomes)
            planned = tuple(asked)
        else:
            ran.extend(runner.run(todo, store, on_event))
    finally:
        if show is not None:
            show.close()
    return ran, planned, elsewhere
