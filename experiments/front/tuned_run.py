"""A tuned study's runs with progress per round (``bpbench run`` and ``bpbench.run`` of a study with [tuning])."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bpbench.experiments.plan.registry import learner_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.plan.study import Study
from bpbench.experiments.schedule.execute import Event, Outcome
from bpbench.experiments.schedule.progress import Progress
from bpbench.experiments.schedule.tuning import run_tuned
from bpbench.experiments.store.run_store import RunStore


def run_tuned_study(
    plan: Study, store: RunStore, executor: Any, on_event: Callable[[Event], None], progress: bool
) -> tuple[list[Outcome], list[str]]:
    """Run ``plan``'s tuning protocol through ``executor``; its warnings (degenerate ranges) first, then
    progress (stderr) shows each round's runs.
    Returns (the outcomes of the runs this driver ran, the run ids of every run the protocol asked
    for: the study's runs, whichever driver ran them)."""
    assert plan.tuning is not None
    for warning in plan.tuning.warnings:  # degenerate ranges: said before any run
        print(f"bpbench: warning: {warning}", file=sys.stderr, flush=True)
    shown: list[Progress] = []
    rounds = 0
    asked: list[str] = []

    def on_round(todo: list[RunSpec]) -> None:
        nonlocal rounds
        rounds += 1
        asked.extend(s.run_id for s in todo)
        if shown:
            shown.pop().close()
        if progress and todo:
            phases = sorted({s.tuning.get("phase", "") for s in todo if s.tuning})
            print(f"tuning round {rounds}: {len(todo)} run(s) ({', '.join(phases)})", file=sys.stderr, flush=True)
            shown.append(Progress(todo, skipped=0))

    def events(event: Event) -> None:
        on_event(event)
        if shown:
            shown[0](event)

    try:
        outcomes = run_tuned(plan.runs, plan.tuning, learner_registry(), store, executor, events, on_round)
        return outcomes, list(dict.fromkeys(asked))
    finally:
        if shown:
            shown.pop().close()
