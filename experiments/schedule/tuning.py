"""The tuning protocol of a tuned study: draw, train, select on validation, retrain on fresh seeds.

Per learner label x task x repeat (a *group*, ``repeats`` independent Optuna studies with their
own sampler seed and tuning seeds): ``trials_for(space)`` configurations are drawn from its search
space by an Optuna sampler (ask-and-tell), each trained at the study's budget on the repeat's
``seeds_per_trial`` tuning seeds; a trial is told the mean validation score over its seeds. With a
pruner, a trial's first seed (its *probe*) runs first and reports every evaluated epoch to the
trial (schedule/pruning.py); a pruned probe makes the trial PRUNED (its other seeds never run),
else the other seeds follow. Once every trial is told, the completed trial with the best mean
(ties: the lower trial number; pruned and failed trials never) is retrained on the repeat's fresh
final seeds. The test split is never read. A group without a search space runs its one
configuration on the final seeds only, marked ``sampler = "none"``. ``compare_default`` adds each
searched learner's hand-picked configuration on all final seeds (``phase = "default"``).

Rounds: each group asks as many trials as the executor runs at once; the runs of all groups
(and the final runs of the groups done tuning) go through one executor call per round, then
are told. Every run is an ordinary run folder whose spec carries ``tuning = {"phase", "trial",
"sampler", "repeat", "seed"}`` (a probe also ``"pruner"`` and ``"report"``: its study). The
Optuna studies live in ``OUT/tuning/journal.log`` (Optuna's journal file storage): a killed
driver resumes with the trials already asked (their runs are skipped when stored, run when not)
and never repeats a told one; two drivers on one folder ask under a file lock
(``OUT/tuning/ask.lock``) and split the runs through the run claims.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from bpbench.experiments.plan.config import ConfigError, build
from bpbench.experiments.plan.registry import Registry
from bpbench.experiments.plan.spec import Budget, RunSpec, digest
from bpbench.experiments.plan.tuning import (
    Choice,
    Space,
    TuningPlan,
    configure,
    rounded,
)
from bpbench.experiments.schedule import journal_check
from bpbench.experiments.schedule.execute import Event, Outcome
from bpbench.experiments.schedule.process_pool import InlineExecutor, ProcessExecutor
from bpbench.experiments.schedule.pruning import make_pruner
from bpbench.experiments.store import records
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.selection import val_score

TUNING_DIR = "tuning"
SCALAR = (type(None), bool, int, float, str)


def tuning_folder(root: Path) -> Path:
    """``OUT/tuning``, created; a ValueError when it (or OUT) is a symlink (never written through)."""
    folder = root / TUNING_DIR
    for path in (root, folder):
        if path.is_symlink():
            raise ValueError(f"{path} is a symlink; bpbench writes tuning state only inside the results folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def journal(root: Path) -> optuna.storages.JournalStorage:
    """The Optuna journal file storage of the results folder ``root``."""
    from optuna.storages.journal import JournalFileBackend

    path = journal_check.state_file(tuning_folder(root), "journal.log")  # never a symlink; repaired if cut short
    journal_check.repair(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@contextmanager
def ask_lock(root: Path) -> Iterator[None]:
    """Hold ``OUT/tuning/ask.lock`` exclusively: counting and asking trials is one step across drivers."""
    with journal_check.open_lock(journal_check.state_file(tuning_folder(root), "ask.lock")) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _encoded(dim: Choice) -> bool:
    return not all(isinstance(v, SCALAR) for v in dim.values)


def distributions(space: Space) -> dict[str, BaseDistribution]:
    """Optuna's distribution of each dimension (non-scalar choices, such as widths, as JSON text)."""
    out: dict[str, BaseDistribution] = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            out[name] = CategoricalDistribution([json.dumps(v) for v in dim.values] if _encoded(dim) else dim.values)
        elif dim.integer:
            out[name] = IntDistribution(int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1))
        else:
            out[name] = FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return out


def grid_space(space: Space) -> dict[str, list[Any]]:
    """The GridSampler's points per dimension (as ``distributions`` encodes them)."""
    return {
        name: ([json.dumps(v) for v in dim.values] if _encoded(dim) else list(dim.values))
        if isinstance(dim, Choice)
        else dim.grid_values()
        for name, dim in space.items()
    }


def decode(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params -> option values (floats to 3 significant digits)."""
    out = {}
    for name, dim in space.items():
        value = params[name]
        out[name] = json.loads(value) if isinstance(dim, Choice) and _encoded(dim) else rounded(value)
    return out


def sampler(plan: TuningPlan, space: Space, key: str, number: int, repeat: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number`` of the group ``key``, seeded from (seed, group, number),
    so a resumed driver draws what an uninterrupted one would; repeat r's Sobol sequence: seed + r."""
    seed = int(digest({"seed": plan.seed, "group": key, "trial": number})[:8], 16)
    if plan.sampler == "qmc":  # one Sobol sequence per seed; categorical dimensions drawn at random
        with warnings.catch_warnings():  # "QMCSampler is experimental": known, and pinned in constraints.txt
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=plan.seed + repeat,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            )
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.GridSampler(grid_space(space), seed=seed)


def stopped_by(store: RunStore, run_id: str) -> str | None:
    """The stored run's ``summary.stopped_by`` ("pruned" for a pruned probe), None when not stored ok."""
    meta = store.read_meta(store.meta_path(run_id))
    return None if meta is None or meta.get("status") != "ok" else meta.get("summary", {}).get("stopped_by")


def train_flops(store: RunStore, run_id: str) -> float:
    """The stored run's training FLOPs (0 when not stored, failed or uncounted)."""
    meta = store.read_meta(store.meta_path(run_id))
    return float(records.stored(meta, "train_flops") or 0) if meta is not None else 0.0


@dataclass
class Group:
    """One learner label x task x repeat of a tuned study: its Optuna study and the runs it asks for."""

    base: RunSpec
    space: Space
    plan: TuningPlan
    learners: Registry
    storage: optuna.storages.BaseStorage
    repeat: int = 0
    name: str = ""
    attempted: set[str] = field(default_factory=set)  # run ids this driver executed (not retried here)
    specs: dict[int, list[RunSpec]] = field(default_factory=dict)  # trial number -> its runs (one per seed)
    retried: set[str] = field(default_factory=set)  # trial runs retried once after their worker was killed

    def __post_init__(self) -> None:
        protocol = {
            "base": self.base.canonical(),
            "space": {k: repr(v) for k, v in self.space.items()},
            "sampler": self.plan.sampler,
            "seed": self.plan.seed,
            "repeat": self.repeat,
            "seeds_per_trial": self.plan.seeds_per_trial,
            "pruner": self.plan.pruner,
        }
        self.name = f"{self.base.label}@{self.base.task_label}#r{self.repeat}#{digest(protocol)[:10]}"

    def study(self, number: int = 0) -> optuna.Study:
        return optuna.load_study(
            study_name=self.name,
            storage=self.storage,
            sampler=sampler(self.plan, self.space, self.name, number, self.repeat),
            pruner=make_pruner(self.plan.pruner, build(Budget, self.base.budget, "budget").epochs),
        )

    def trials(self) -> list[FrozenTrial]:
        if not self.space:
            return []
        optuna.create_study(study_name=self.name, storage=self.storage, direction="maximize", load_if_exists=True)
        return self.study().get_trials(deepcopy=False)

    def drawn(self, trial: FrozenTrial) -> bool:
        """Whether the trial's configuration was drawn in full (a driver killed inside ``ask`` leaves
        a trial without; it is discarded: it never ran and does not count as a trial)."""
        return journal_check.in_space(self, trial, distributions(self.space))  # refused out of the space

    def trial_specs(self, trial: FrozenTrial | optuna.Trial) -> list[RunSpec]:
        """The trial's runs, one per tuning seed of its repeat; with a pruner the first (the *probe*)
        reports to the trial at every evaluated epoch (schedule/pruning.py)."""
        if trial.number not in self.specs:
            values, out = decode(self.space, trial.params), []
            for j, seed in enumerate(self.plan.tuning_seeds(self.repeat)):
                tag = {"phase": "tuning", "trial": trial.number, "sampler": self.plan.sampler, "repeat": self.repeat}
                tag["seed"] = j
                if self.plan.pruner != "none" and j == 0:
                    tag.update(pruner=self.plan.pruner, report=self.name)
                out.append(configure(self.base, values, self.learners, seed, tag))
            self.specs[trial.number] = out
        return self.specs[trial.number]

    def pending(self, specs: list[RunSpec], store: RunStore) -> list[RunSpec]:
        """A trial's runs still to run: with a pruner the probe first, the other seeds once it ended unpruned."""
        if self.plan.pruner != "none":
            status = store.status(specs[0].run_id)
            if status is None:
                return specs[:1]
            if status != "ok" or stopped_by(store, specs[0].run_id) == "pruned":
                return []
        return [s for s in specs if store.status(s.run_id) is None]

    def best(self, trials: list[FrozenTrial]) -> FrozenTrial | None:
        """The completed trial with the best mean validation score (ties: the lower number); pruned and
        failed trials are never chosen."""
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def finals(self, trials: list[FrozenTrial]) -> list[RunSpec]:
        """The repeat's final runs: its chosen configuration on its fresh seeds ([] when no trial completed)."""
        tag: dict[str, Any] = {"phase": "final", "trial": None, "sampler": "none", "repeat": self.repeat}
        values: dict[str, Any] = {}
        if self.space:
            chosen = self.best(trials)
            if chosen is None:
                return []
            values = decode(self.space, chosen.params)
            tag.update(trial=chosen.number, sampler=self.plan.sampler)
        seeds = self.plan.final_seed_indices(self.repeat)
        return [configure(self.base, values, self.learners, seed, tag) for seed in seeds]

    def budget_left(self, trials: list[FrozenTrial], store: RunStore) -> bool:
        """Whether another trial may be asked: below ``trials_for`` and, with a FLOPs budget, below it
        (the stored runs' training FLOPs; trials in flight count when they are stored)."""
        if len(trials) >= self.plan.trials_for(self.space):
            return False
        if self.plan.flops is None:
            return True
        spent = sum(train_flops(store, s.run_id) for t in trials for s in self.trial_specs(t))
        return spent < self.plan.flops

    def next(self, limit: int, store: RunStore) -> list[tuple[int | None, RunSpec]]:
        """(trial number or None for a final run, its spec) this round; call under ``ask_lock``.

        A trial asked but not told whose runs are stored (a driver died between the two) is told now,
        never run again; one whose runs are not stored is handed out again with the same configuration.
        """
        for trial in self.trials():
            if trial.state != TrialState.RUNNING:
                continue
            if self.drawn(trial):
                self.tell(trial.number, self.trial_specs(trial), store)
            else:  # its driver died inside the ask (asks hold ask_lock, so not a live one): never ran
                self.study().tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        trials = [t for t in self.study().get_trials(deepcopy=False) if self.drawn(t)] if self.space else []
        trials = journal_check.checked(self, trials, store)  # scores from the run folders; missing runs again
        running = [t for t in trials if t.state == TrialState.RUNNING]
        out: list[tuple[int | None, RunSpec]] = [
            (t.number, s) for t in running for s in journal_check.pending(self, self.trial_specs(t), store)
        ]
        handed = 0
        while self.space and handed < limit - len(running) and self.budget_left(trials, store):
            study = self.study(len(trials))
            new = study.ask(fixed_distributions=distributions(self.space))
            try:
                specs = self.trial_specs(new)
            except ConfigError as exc:  # a drawn combination the learner refuses: a failed trial
                new.set_user_attr("error", str(exc))
                study.tell(new.number, state=TrialState.FAIL)
            else:
                todo = self.pending(specs, store)
                out += [(new.number, s) for s in todo]
                handed += 1 if todo else 0
                if not todo:  # its runs are stored already (say, by an earlier driver): told now
                    self.tell(new.number, specs, store)
            trials = [t for t in study.get_trials(deepcopy=False) if self.drawn(t)]
        if not out and not running and not (self.space and self.budget_left(trials, store)):
            out = [(None, spec) for spec in self.finals(journal_check.checked(self, trials, store))]
        return [(n, s) for n, s in out if s.run_id not in self.attempted]

    def tell(self, number: int, specs: list[RunSpec], store: RunStore) -> None:
        """Report a trial to its study once its runs are stored: PRUNED when its probe was pruned,
        else the mean validation score over its seeds (FAIL when a seed failed); a finished trial is
        left as it is."""
        if journal_check.retry_killed(self, specs, store):
            return  # a worker was killed: stays RUNNING, that run is handed out once more
        status = [store.status(s.run_id) for s in specs]
        study = self.study()
        if self.plan.pruner != "none" and stopped_by(store, specs[0].run_id) == "pruned":
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            return
        if self.plan.pruner != "none" and status[0] == "failed":  # its other seeds never run
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            return
        if None in status:
            return  # not all run (interrupted, or seeds to come): stays RUNNING
        values = [val_score(store, s.run_id, self.plan.select) for s in specs]
        if any(v is None for v in values):
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(number, sum(cast(list[float], values)) / len(values), skip_if_finished=True)


@dataclass
class DefaultArm:
    """``compare_default``: each searched learner's hand-picked configuration on the pooled final
    seeds, tagged ``phase = "default"`` (handed out in the first round, never told)."""

    runs: list[RunSpec]
    attempted: set[str] = field(default_factory=set)

    def next(self, limit: int, store: RunStore) -> list[tuple[int | None, RunSpec]]:
        return [(None, s) for s in self.runs if s.run_id not in self.attempted]

    def tell(self, number: int, specs: list[RunSpec], store: RunStore) -> None:
        raise AssertionError("default runs are not trials")


def default_runs(study_runs: list[RunSpec], plan: TuningPlan, learners: Registry) -> list[RunSpec]:
    """The hand-picked arm of ``compare_default`` (none for a learner without a search space: its
    final runs are its hand-picked configuration already)."""
    if not plan.compare_default:
        return []
    seeds = range(plan.repeats * plan.final_seeds)
    tag = {"phase": "default", "trial": None, "sampler": "none"}
    return [configure(b, {}, learners, s, tag) for b in study_runs if plan.spaces[b.label] for s in seeds]


def concurrency(executor: Any) -> int:
    """How many runs the executor runs at once (a tuning round asks that many trials per group)."""
    if isinstance(executor, ProcessExecutor):
        return executor.plan(10**6)[0]  # its worker processes
    if isinstance(executor, InlineExecutor):
        return 1
    return getattr(executor, "jobs", 0) or os.cpu_count() or 1  # Ray: its jobs, else the cores here


def groups_of(study_runs: list[RunSpec], plan: TuningPlan, learners: Registry, root: Path) -> list[Group]:
    storage = journal(root)
    return [
        Group(base, plan.spaces[base.label], plan, learners, storage, repeat)
        for base in study_runs
        for repeat in range(plan.repeats)
    ]


def run_tuned(
    study_runs: list[RunSpec],
    plan: TuningPlan,
    learners: Registry,
    store: RunStore,
    executor: Any,
    on_event: Callable[[Event], None],
    on_round: Callable[[list[RunSpec]], None] | None = None,
) -> list[Outcome]:
    """Run the tuning protocol for the base runs of a tuned study; the outcomes of the runs executed here."""
    if plan.pruner != "none" and not isinstance(executor, (InlineExecutor, ProcessExecutor)):
        raise ConfigError(
            f"tuning.pruner = {plan.pruner!r} with this executor: a pruned trial reports to the journal in "
            "the results folder from its worker; allowed: --executor inline | process, or pruner = none"
        )
    optuna.logging.set_verbosity(logging.ERROR)  # QMC's note that categorical dimensions are drawn at random
    arms: list[Group | DefaultArm] = [*groups_of(study_runs, plan, learners, store.root)]
    arms.append(DefaultArm(default_runs(study_runs, plan, learners)))
    limit = max(1, concurrency(executor))
    ran: list[Outcome] = []
    while True:
        with ask_lock(store.root):
            batch = [(arm, number, spec) for arm in arms for number, spec in arm.next(limit, store)]
        if not batch:
            return ran
        todo: dict[str, RunSpec] = {}
        for arm, _, spec in batch:
            arm.attempted.add(spec.run_id)
            if store.status(spec.run_id) != "ok":
                todo.setdefault(spec.run_id, spec)
        if on_round is not None:
            on_round(list(todo.values()))
        ran.extend(executor.run(list(todo.values()), store, on_event))
        told = {(id(arm), number): arm for arm, number, _ in batch if number is not None}
        for (_, number), arm in told.items():
            assert isinstance(arm, Group) and number is not None
            arm.tell(number, arm.specs[number], store)


def trial_plan(study_runs: list[RunSpec], plan: TuningPlan, learners: Registry) -> list[str]:
    """The lines ``bpbench run --dry-run`` prints for a tuned study: the protocol, each warning, per
    learner x task its space, trials (for qmc, random and grid each repeat's configurations, as a run
    draws them) and final seeds."""
    optuna.logging.set_verbosity(logging.ERROR)
    budget = f"{plan.flops:g} training FLOPs" if plan.flops is not None else f"{plan.trials} trial(s)"
    scale = " per searched dimension" if plan.trials_scale == "per_dimension" and plan.flops is None else ""
    finals = plan.repeats * plan.final_seeds
    lines = [
        f"tuned study: {budget}{scale} per learner x task and repeat, {plan.repeats} repeat(s), "
        f"{plan.seeds_per_trial} tuning seed(s) per trial (selected on their mean {plan.select}), "
        f"sampler {plan.sampler} (seed {plan.seed} + repeat), pruner {plan.pruner}; "
        + ", ".join(f"repeat {r}: tuning seed indices {plan.tuning_seeds(r)}" for r in range(plan.repeats))
        + f"; final seeds 0..{finals - 1} ({plan.final_seeds} per repeat)"
        + ("; hand-picked configurations on the same final seeds" if plan.compare_default else ""),
        *(f"warning: {w}" for w in plan.warnings),
    ]
    for base in study_runs:
        space = plan.spaces[base.label]
        if not space:
            lines.append(f"{base.label} on {base.task_label}: no search space: its one configuration, {finals} run(s)")
            continue
        dims = ", ".join(f"{k} {v}" for k, v in space.items())
        trials = plan.trials_for(space) if plan.flops is None else None
        count = f"{trials} trial(s)" if trials else "trials while the FLOPs last"
        lines.append(f"{base.label} on {base.task_label}: {count} x {plan.repeats} repeat(s) over {dims}")
        if plan.sampler == "tpe" or trials is None:
            lines.append("  configurations drawn adaptively or while the budget lasts")
            continue
        for repeat in range(plan.repeats):
            group = Group(base, space, plan, learners, optuna.storages.InMemoryStorage(), repeat)
            optuna.create_study(study_name=group.name, storage=group.storage, direction="maximize")
            for number in range(trials):
                trial = group.study(number).ask(fixed_distributions=distributions(space))
                lines.append(f"  repeat {repeat} trial {number}: {decode(space, trial.params)}")
    return lines
