"""The tuning journal is input from someone else too: checked against the run folders and the space.

``OUT/tuning/journal.log`` (Optuna's journal) says which trials were drawn and what each scored;
the trials' run folders hold what they actually scored. Before the protocol uses the journal:

- ``state_file`` / ``open_lock``: ``journal.log`` and ``ask.lock`` are never a symbolic link (a
  missing target would be created, an existing one appended to, outside the folder);
- ``repair``: a journal cut short (a full disk, a killed writer) is named with its first damaged
  line, kept beside it as ``journal.log.damaged-<time>``, and cut back to its intact lines, so the
  study resumes from them (trials whose results were in the lost lines are told again from their
  stored runs);
- ``in_space``: a trial whose drawn values lie outside the study's search space (a hand-edited
  journal) is refused with a warning: never run, never counted;
- ``checked``: a told trial's score is the one its run folder holds (a journal value that
  disagrees is a warning, the run folder wins); a told trial whose run folder is missing is run
  again with its configuration and seed;
- ``retry_killed``: a trial whose worker was killed (SIGKILL, out of memory) is retried once, as a
  plain run is run again; a second kill counts as a failed trial.
"""

from __future__ import annotations

import copy
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store.dataset import warn
from bpbench.experiments.store.run_store import RunStore, atomic_write
from bpbench.experiments.store.safe_paths import UnsafePathError, file_mode
from bpbench.experiments.store.selection import val_score

if TYPE_CHECKING:  # the protocol's group (schedule/tuning.py imports this module)
    from bpbench.experiments.schedule.tuning import Group

KILLED = ("worker process died", "Ray worker died")  # how executors record a run whose worker was killed


def state_file(folder: Path, name: str) -> Path:
    """``folder/name``; an ``UnsafePathError`` when it is a symbolic link (never followed)."""
    path = folder / name
    if path.is_symlink():
        raise UnsafePathError(
            f"refusing to use {path}: it is a symbolic link (tuning state is written only inside the "
            "results folder); remove it and run again"
        )
    return path


def open_lock(path: Path) -> IO[str]:
    """``path`` opened for appending, created with the user's umask; never through a symbolic link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, file_mode())
    except OSError as exc:
        if path.is_symlink():
            raise UnsafePathError(f"refusing to use {path}: it is a symbolic link; remove it and run again") from exc
        raise
    return os.fdopen(fd, "a")


def _intact(data: bytes) -> tuple[int, int] | None:
    """(bytes, lines) of the intact part of a journal's ``data``; None when all of it is intact."""
    offset = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        try:
            ok = line.endswith(b"\n") and isinstance(json.loads(line), dict)
        except ValueError:
            ok = False
        if not ok:
            return offset, number
        offset += len(line)
    return None


def repair(path: Path) -> None:
    """Cut a damaged journal back to its intact lines (module doc), under Optuna's own journal lock."""
    if not path.exists():
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        damaged = _intact(data)
        if damaged is None:
            return
        offset, line = damaged
        kept = path.with_name(f"{path.name}.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}")
        atomic_write(kept, lambda p: p.write_bytes(data), path.parent.parent)
        atomic_write(path, lambda p: p.write_bytes(data[:offset]), path.parent.parent)
        warn(
            f"{path}: line {line} is truncated or not a journal entry; resuming from the {line - 1} intact "
            f"line(s) before it (the damaged journal is kept as {kept.name})"
        )
    finally:
        lock.release()


def _contains(distribution: Any, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(c) and value == c for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if isinstance(distribution, IntDistribution) and value != int(value):
        return False
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    return bool(distribution.low <= value <= distribution.high)


def in_space(group: Group, trial: FrozenTrial, expected: dict[str, Any]) -> bool:
    """Whether every drawn value of ``trial`` lies in ``expected`` (the group's distributions);
    warned when one does not (the trial is refused: not run, not counted)."""
    for name, distribution in expected.items():
        if name not in trial.params:
            return False  # not drawn in full (a driver killed inside its ask)
        if trial.distributions.get(name) != distribution or not _contains(distribution, trial.params[name]):
            warn(
                f"tuning trial {trial.number} of {group.name}: {name} = {str(trial.params[name])[:40]!r} lies "
                "outside the study's search space (an edited journal?); refused: not run, not counted"
            )
            return False
    return True


def _stored_score(group: Group, specs: list[RunSpec], store: RunStore) -> tuple[bool, float | None]:
    """(every run stored, the trial's score from its run folders: the mean validation score over its
    seeds, None when one failed)."""
    if any(store.status(s.run_id) is None for s in specs):
        return False, None
    values = [val_score(store, s.run_id, group.plan.select) for s in specs]
    return True, None if any(v is None for v in values) else sum(v for v in values if v is not None) / len(values)


def checked(group: Group, trials: list[FrozenTrial], store: RunStore) -> list[FrozenTrial]:
    """``trials`` with each told trial's score read from its run folders (module doc); a told trial
    whose runs are not all stored comes back RUNNING, so the protocol runs the missing ones again."""
    journal = store.root / "tuning" / "journal.log"
    out = []
    for trial in trials:
        if trial.state not in (TrialState.COMPLETE, TrialState.FAIL) or trial.user_attrs.get("error"):
            out.append(trial)  # running or pruned, or refused by the learner when drawn (never a run)
            continue
        specs = group.trial_specs(trial)
        if group.plan.pruner != "none":
            specs = specs[:1] if store.status(specs[0].run_id) != "ok" else specs  # a failed probe ends it
        stored, value = _stored_score(group, specs, store)
        if not stored:
            missing = next(s.run_id for s in specs if store.status(s.run_id) is None)
            warn(f"tuning trial {trial.number} of {group.name}: its run runs/{missing} is missing; run again")
            trial = _as(trial, TrialState.RUNNING, None)
        else:
            told = trial.value if trial.state == TrialState.COMPLETE else None
            if (value is None) != (told is None) or (
                value is not None and told is not None and not math.isclose(value, told, rel_tol=1e-9)
            ):
                warn(
                    f"{journal}: trial {trial.number} of {group.name} records {told}, its run folders "
                    f"({', '.join(s.run_id for s in specs)}) hold {value}; the run folders' value is used"
                )
                trial = _as(trial, TrialState.FAIL if value is None else TrialState.COMPLETE, value)
        out.append(trial)
    return out


def pending(group: Group, specs: list[RunSpec], store: RunStore) -> list[RunSpec]:
    """``group.pending``, and a run whose worker was killed while its one retry is due."""
    due = [s for s in specs if s.run_id in group.retried and s.run_id not in group.attempted]
    return [*group.pending(specs, store), *(s for s in due if store.status(s.run_id) == "failed")]


def _as(trial: FrozenTrial, state: TrialState, value: float | None) -> FrozenTrial:
    """A copy of ``trial`` in ``state`` with ``value`` (the journal itself is left as it is)."""
    out = copy.copy(trial)
    out.state = state
    out.values = None if value is None else [value]
    return out


def retry_killed(group: Group, specs: list[RunSpec], store: RunStore) -> bool:
    """Whether a run of a trial, stored as failed because its worker was killed, is to run once more
    (the trial is then left untold and the run handed out again); a second kill is a failed run."""
    due = False
    for spec in specs:
        if spec.run_id in group.retried:  # its retry is pending until this driver has handed it out again
            due |= spec.run_id not in group.attempted
            continue
        meta = store.read_meta(store.meta_path(spec.run_id)) if store.status(spec.run_id) == "failed" else None
        error = str(meta.get("error") or "") if meta is not None else ""
        if error.startswith(KILLED):
            group.retried.add(spec.run_id)
            group.attempted.discard(spec.run_id)
            warn(f"tuning trial run {spec.run_id} ({group.name}): its worker was killed ({error[:80]}); retried once")
            due = True
    return due
