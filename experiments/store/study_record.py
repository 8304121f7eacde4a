"""A study folder remembers what it holds: the study definition (after overrides) it was first run with.

``admit(store, name, raw, run_ids, extend)`` is called before a study runs into a folder:

- no record of ``name`` there yet: the definition and its run ids are recorded;
- the same definition: nothing to do (a resumed or repeated study);
- a different one: a ``ConfigError`` naming the first difference (``budget.epochs: 20 recorded
  here, 5 now``), so runs of two definitions are never pooled under one study by accident;
  unless ``extend`` is true and every run of a recorded learner label differs from one of that
  label's recorded runs in grid values or seed only (new grid points, seeds, learners or tasks;
  a changed budget, schedule or fixed option of an existing label is refused) and it keeps every
  recorded run (a definition that drops a learner, task, grid point or seed is refused: the
  record never loses what it holds), in which case the record becomes the new definition (its
  run ids: the union).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store.describe import setting
from bpbench.experiments.store.run_store import RunStore


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def difference(old: Any, new: Any, where: str = "") -> str | None:
    """The first place where two study tables differ, as ``key.path: OLD recorded here, NEW now``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            at = f"{where}.{key}" if where else str(key)
            if key not in old:
                return f"{at}: not set in the recorded study, {_short(new[key])} now"
            if key not in new:
                return f"{at}: {_short(old[key])} recorded here, not set now"
            found = difference(old[key], new[key], at)
            if found:
                return found
        return None
    if old != new or type(old) is not type(new):
        return f"{where or 'the study'}: {_short(old)} recorded here, {_short(new)} now"
    return None


def _grid_only(new: RunSpec, old_runs: list[RunSpec]) -> bool:
    """Whether ``new`` differs from some recorded run of its label only in grid values (or seed)."""
    mine = setting(new.to_json())
    for old in old_runs:
        theirs = setting(old.to_json())
        differ = {k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}
        axes = {_axis_key(k) for k in (*new.varied, *old.varied)}
        if all(any(k == a or k.startswith(a + ".") for a in axes) for k in differ):
            return True
    return False


def _axis_key(varied: str) -> str:
    """A spec's varied name (``params.lr``, ``task.frames``) as ``setting`` keys it."""
    section, _, name = varied.partition(".")
    return f"{'task_params' if section == 'task' else section}.{name}"


def admit(
    store: RunStore,
    name: str,
    raw: dict[str, Any],
    runs: list[RunSpec],
    extend: bool,
    expand_recorded: Callable[[dict[str, Any]], list[RunSpec]],
) -> None:
    """Record the study ``name`` (its table ``raw`` and ``runs``) in ``store``'s folder, or check it
    against the record (module doc). ``expand_recorded``: the runs of a recorded study table."""
    raw = json.loads(json.dumps(raw, sort_keys=True, default=str))  # as the record holds it (tuples as lists)
    run_ids = [s.run_id for s in runs]
    recorded = next((s for s in store.studies() if s["name"] == name), None)
    if recorded is None:
        store.write_study(name, raw, run_ids)
        return
    diff = difference(recorded["study"], raw)
    old_ids = recorded.get("runs") if isinstance(recorded.get("runs"), list) else []
    if diff is None:
        if set(run_ids) - set(old_ids):
            store.write_study(name, raw, run_ids)  # a record from before run ids were kept
        return
    where = str(store.root)
    if not extend:
        raise ConfigError(
            f"{where} holds study {name} with another definition ({diff}); use another --out, "
            "or --extend to add grid points or seeds to it"
        )
    old_runs = _checked_extension(name, where, diff, runs, recorded["study"], expand_recorded)
    store.write_study(name, raw, sorted(set(old_ids) | set(run_ids) | {o.run_id for o in old_runs}))


def _checked_extension(
    name: str,
    where: str,
    diff: str,
    runs: list[RunSpec],
    recorded_study: dict[str, Any],
    expand_recorded: Callable[[dict[str, Any]], list[RunSpec]],
) -> list[RunSpec]:
    """The recorded runs of study ``name`` (its table ``recorded_study``), once ``runs`` are checked to
    only add grid points or seeds to them (``--extend``); ConfigError otherwise. ``diff``: how the
    definitions differ, for the message."""
    run_ids = [s.run_id for s in runs]
    try:
        old_runs = expand_recorded(recorded_study)
    except ConfigError as exc:
        raise ConfigError(
            f"--extend: the recorded definition of study {name} in {where} no longer expands ({exc}); use another --out"
        ) from exc
    by_label: dict[str, list[RunSpec]] = {}
    for old in old_runs:
        by_label.setdefault(old.label, []).append(old)
    for new in runs:
        if new.label in by_label and not _grid_only(new, by_label[new.label]):
            raise ConfigError(
                f"--extend may only add grid points or seeds, but {new.label} changes more than a "
                f"grid value ({diff}): a changed budget or option of an existing label is a new "
                "study; use another --out"
            )
    dropped = [o for o in old_runs if o.run_id not in set(run_ids)]
    if dropped:
        raise ConfigError(
            f"--extend only adds to study {name} in {where}, but this definition drops {len(dropped)} recorded "
            f"run(s) (e.g. {dropped[0].label} on {dropped[0].task_label}, seed {dropped[0].seed_index}); "
            "keep every recorded learner, task, grid point and seed, or use another --out"
        )
    return old_runs
