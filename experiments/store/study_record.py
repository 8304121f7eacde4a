"""A study folder remembers what it holds: the study definition (after overrides) it was first run with.

``admit(store, name, raw, run_ids, extend)`` is called before a study runs into a folder:

- no record of ``name`` there yet: the definition and its run ids are recorded;
- the same definition: nothing to do (a resumed or repeated study);
- a different one: a ``ConfigError`` naming the first difference (``budget.epochs: 20 recorded
  here, 5 now``), so runs of two definitions are never pooled under one study by accident;
  unless ``extend`` is true and the new definition only adds runs (new grid points, seeds,
  learners or tasks: every recorded run is still one of its runs; a changed budget or option
  of an existing label changes its run ids and is refused), in which case the record becomes
  the new definition.
"""
from __future__ import annotations

import json
from typing import Any

from bpbench.experiments.plan.config import ConfigError
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


def admit(store: RunStore, name: str, raw: dict[str, Any], run_ids: list[str], extend: bool) -> None:
    """Record the study ``name`` in ``store``'s folder, or check it against the record (module doc)."""
    raw = json.loads(json.dumps(raw, sort_keys=True, default=str))  # as the record holds it (tuples as lists)
    recorded = next((s for s in store.studies() if s["name"] == name), None)
    if recorded is None:
        store.write_study(name, raw, run_ids)
        return
    diff = difference(recorded["study"], raw)
    if diff is None:
        if "runs" not in recorded:
            store.write_study(name, raw, run_ids)  # a record from before run ids were kept
        return
    where = str(store.root)
    if not extend:
        raise ConfigError(f"{where} holds study {name} with another definition ({diff}); use another --out, "
                          "or --extend to add grid points or seeds to it")
    old_ids = recorded.get("runs")
    if not isinstance(old_ids, list):
        raise ConfigError(f"--extend: the record of study {name} in {where} lists no run ids (written by an older "
                          "bpbench); use another --out")
    dropped = sorted(set(old_ids) - set(run_ids))
    if dropped:
        raise ConfigError(f"--extend may only add runs, but {len(dropped)} recorded run(s) of study {name} are not "
                          f"in the new definition ({diff}): a changed budget or option of an existing label is a "
                          "new study; use another --out")
    store.write_study(name, raw, run_ids)
