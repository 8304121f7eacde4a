"""The tuning protocol of a tuned study: draw, train, select on validation, retrain on fresh seeds.

Per learner label x task (a *group*): ``trials`` configurations are drawn from its search space
by an Optuna sampler (ask-and-tell), each trained once at the study's budget on its own tuning
seed (``TUNING_SEED_BASE + trial``); once every trial is told, the configuration with the best
validation accuracy (ties: the lower trial number) is retrained with ``final_seeds`` fresh seeds
(0..final_seeds-1). The test split is never read. A group without a search space runs its one
configuration on the final seeds only, marked ``sampler = "none"``.

Rounds: each group asks as many trials as the executor runs at once; the trials of all groups
(and the final runs of the groups done tuning) go through one executor call per round, then
are told. Every trial is an ordinary run folder whose spec carries ``tuning = {"phase", "trial",
"sampler"}``. The Optuna studies live in ``OUT/tuning/journal.log`` (Optuna's journal file
storage): a killed driver resumes with the trials already asked (their runs are skipped when
stored, run when not) and never repeats a told one; two drivers on one folder ask under a file
lock (``OUT/tuning/ask.lock``) and split the runs through the run claims.
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
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.registry import Registry
from bpbench.experiments.plan.spec import RunSpec, digest
from bpbench.experiments.plan.tuning import (
    TUNING_SEED_BASE,
    Choice,
    Space,
    TuningPlan,
    configure,
    rounded,
)
from bpbench.experiments.schedule import journal_check
from bpbench.experiments.schedule.execute import Event, Outcome
from bpbench.experiments.schedule.process_pool import InlineExecutor, ProcessExecutor
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


def sampler(plan: TuningPlan, space: Space, key: str, number: int) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number`` of the group ``key``, seeded from (seed, group, number),
    so a resumed driver draws what an uninterrupted one would."""
    seed = int(digest({"seed": plan.seed, "group": key, "trial": number})[:8], 16)
    if plan.sampler == "qmc":  # one Sobol sequence per seed; categorical dimensions drawn at random
        with warnings.catch_warnings():  # "QMCSampler is experimental": known, and pinned in constraints.txt
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=plan.seed,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            )
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.GridSampler(grid_space(space), seed=seed)


@dataclass
class Group:
    """One learner label x task of a tuned study: its Optuna study and the runs it asks for."""

    base: RunSpec
    space: Space
    plan: TuningPlan
    learners: Registry
    storage: optuna.storages.BaseStorage
    name: str = ""
    attempted: set[str] = field(default_factory=set)  # run ids this driver executed (not retried here)
    retried: set[str] = field(default_factory=set)  # trial runs retried once after their worker was killed

    def __post_init__(self) -> None:
        protocol = {
            "base": self.base.canonical(),
            "space": {k: repr(v) for k, v in self.space.items()},
            "sampler": self.plan.sampler,
            "seed": self.plan.seed,
        }
        self.name = f"{self.base.label}@{self.base.task_label}#{digest(protocol)[:10]}"

    def study(self, number: int = 0) -> optuna.Study:
        return optuna.load_study(
            study_name=self.name, storage=self.storage, sampler=sampler(self.plan, self.space, self.name, number)
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

    def trial_spec(self, trial: FrozenTrial | optuna.Trial) -> RunSpec:
        tag = {"phase": "tuning", "trial": trial.number, "sampler": self.plan.sampler}
        return configure(
            self.base, decode(self.space, trial.params), self.learners, TUNING_SEED_BASE + trial.number, tag
        )

    def best(self, trials: list[FrozenTrial]) -> FrozenTrial | None:
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        return max(done, key=lambda t: (t.value, -t.number)) if done else None

    def finals(self, trials: list[FrozenTrial]) -> list[RunSpec]:
        """The final runs: the chosen configuration on fresh seeds ([] when every trial failed)."""
        if not self.space:
            values: dict[str, Any] = {}
            tag: dict[str, Any] = {"phase": "final", "trial": None, "sampler": "none"}
        else:
            chosen = self.best(trials)
            if chosen is None:
                return []
            values = decode(self.space, chosen.params)
            tag = {"phase": "final", "trial": chosen.number, "sampler": self.plan.sampler}
        return [configure(self.base, values, self.learners, seed, tag) for seed in range(self.plan.final_seeds)]

    def next(self, limit: int, store: RunStore) -> list[tuple[int | None, RunSpec]]:
        """(trial number or None for a final run, its spec) this round; call under ``ask_lock``.

        A trial asked but not told whose run is stored (a driver died between the two) is told now,
        never run again; one whose run is not stored is handed out again with the same configuration.
        """
        for trial in self.trials():
            if trial.state != TrialState.RUNNING:
                continue
            if self.drawn(trial):
                self.tell(trial.number, self.trial_spec(trial), store)
            else:  # its driver died inside the ask (asks hold ask_lock, so not a live one): never ran
                self.study().tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        trials = [t for t in self.study().get_trials(deepcopy=False) if self.drawn(t)]
        trials = journal_check.checked(self, trials, store)  # scores from the run folders; missing runs again
        running = [t for t in trials if t.state == TrialState.RUNNING]
        asked = len(trials)
        out: list[tuple[int | None, RunSpec]] = []
        for trial in running:
            out.append((trial.number, self.trial_spec(trial)))
        for _ in range(max(0, min(limit - len(running), self.plan.trials - asked))):
            study = self.study(len(trials))
            new = study.ask(fixed_distributions=distributions(self.space))
            try:
                out.append((new.number, self.trial_spec(new)))
            except ConfigError as exc:  # a drawn combination the learner refuses: a failed trial
                new.set_user_attr("error", str(exc))
                study.tell(new.number, state=TrialState.FAIL)
            trials = [t for t in study.get_trials(deepcopy=False) if self.drawn(t)]
        if not out and len(trials) >= self.plan.trials:
            out = [(None, spec) for spec in self.finals(journal_check.checked(self, trials, store))]
        return [(n, s) for n, s in out if s.run_id not in self.attempted]

    def tell(self, number: int, spec: RunSpec, store: RunStore) -> None:
        """Report a trial's run to its study (a finished trial is left as it is)."""
        if store.status(spec.run_id) is None:
            return  # not run (interrupted): stays RUNNING, run on resume
        if journal_check.retry_killed(self, spec, store):
            return  # its worker was killed: stays RUNNING, run once more
        value = val_score(store, spec.run_id, self.plan.select)
        study = self.study()
        if value is None:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(number, value, skip_if_finished=True)


def concurrency(executor: Any) -> int:
    """How many runs the executor runs at once (a tuning round asks that many trials per group)."""
    if isinstance(executor, ProcessExecutor):
        return executor.plan(10**6)[0]  # its worker processes
    if isinstance(executor, InlineExecutor):
        return 1
    return getattr(executor, "jobs", 0) or os.cpu_count() or 1  # Ray: its jobs, else the cores here


def groups_of(study_runs: list[RunSpec], plan: TuningPlan, learners: Registry, root: Path) -> list[Group]:
    storage = journal(root)
    return [Group(base, plan.spaces[base.label], plan, learners, storage) for base in study_runs]


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
    optuna.logging.set_verbosity(logging.ERROR)  # QMC's note that categorical dimensions are drawn at random
    groups = groups_of(study_runs, plan, learners, store.root)
    limit = max(1, concurrency(executor))
    ran: list[Outcome] = []
    while True:
        with ask_lock(store.root):
            batch = [(group, number, spec) for group in groups for number, spec in group.next(limit, store)]
        if not batch:
            return ran
        todo: dict[str, RunSpec] = {}
        for group, _, spec in batch:
            group.attempted.add(spec.run_id)
            if store.status(spec.run_id) != "ok":
                todo.setdefault(spec.run_id, spec)
        if on_round is not None:
            on_round(list(todo.values()))
        ran.extend(executor.run(list(todo.values()), store, on_event))
        for group, number, spec in batch:
            if number is not None:
                group.tell(number, spec, store)


def trial_plan(study_runs: list[RunSpec], plan: TuningPlan, learners: Registry) -> list[str]:
    """The lines ``bpbench run --dry-run`` prints for a tuned study: per learner x task its space,
    trials (for qmc, random and grid the configurations drawn, as a run draws them) and final seeds."""
    optuna.logging.set_verbosity(logging.ERROR)
    final = f"then the best on validation with final seeds 0..{plan.final_seeds - 1}"
    last = TUNING_SEED_BASE + plan.trials - 1
    lines = [
        (
            f"tuned study: {plan.trials} trial(s) per learner x task, sampler {plan.sampler} (seed {plan.seed}), "
            f"selected by {plan.select}; tuning seed indices {TUNING_SEED_BASE}..{last}"
        )
    ]
    for base in study_runs:
        space = plan.spaces[base.label]
        if not space:
            lines.append(
                f"{base.label} on {base.task_label}: no search space: its one configuration, "
                f"final seeds 0..{plan.final_seeds - 1} ({plan.final_seeds} run(s))"
            )
            continue
        dims = ", ".join(f"{k} {v}" for k, v in space.items())
        lines.append(
            f"{base.label} on {base.task_label}: {plan.trials} trial(s) over {dims}; {final} "
            f"({plan.trials + plan.final_seeds} run(s))"
        )
        if plan.sampler == "tpe":
            lines.append("  configurations drawn adaptively from the trials told so far")
            continue
        group = Group(base, space, plan, learners, optuna.storages.InMemoryStorage())
        optuna.create_study(study_name=group.name, storage=group.storage, direction="maximize")
        for number in range(plan.trials):
            trial = group.study(number).ask(fixed_distributions=distributions(space))
            lines.append(f"  trial {number}: {decode(space, trial.params)}")
    return lines
