"""This driver's share of a study: the runs it claims, in order, whatever the executor.

Every executor takes its next run from a ``RunQueue``. ``take()`` returns a run this driver
has just claimed and that no other driver finished meanwhile, or None when none can start
now. Runs another live driver holds are set aside and looked at again every ``poll``
seconds: finished there -> reported as an ``("elsewhere", run_id, status)`` event and
dropped; their owner died -> taken over. ``waiting`` stays true until every run is either
handed out here or finished elsewhere, so two drivers on one folder both end when the
study is complete, and the work is split between them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.schedule.execute import Event
from bpbench.experiments.store.claims import Claims
from bpbench.experiments.store.run_store import RunStore

POLL_S = 2.0


class RunQueue:
    """Hands out the runs of ``specs`` this driver may execute; use as a context manager."""

    def __init__(
        self,
        specs: list[RunSpec],
        store: RunStore,
        on_event: Callable[[Event], None],
        claims: Claims | None = None,
        poll: float = POLL_S,
    ) -> None:
        self.store, self.on_event, self.poll = store, on_event, poll
        self.claims = claims or Claims(store.root / "claims")
        self.pending = deque(specs)
        self.elsewhere: list[RunSpec] = []  # held by another live driver
        self.baseline = {s.run_id: store.stamp(s.run_id) for s in specs}  # what was stored when we started
        self._last_look = 0.0

    def __enter__(self) -> RunQueue:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.claims.close()  # runs not finished here go back to the pool

    @property
    def waiting(self) -> bool:
        """Whether some run is neither handed out here nor finished elsewhere yet."""
        return bool(self.pending or self.elsewhere)

    def take(self) -> RunSpec | None:
        """The next run this driver now holds the claim on; None when none can start now."""
        while self.pending:
            spec = self.pending.popleft()
            if self._claim(spec):
                return spec
        if self.elsewhere and time.monotonic() - self._last_look >= self.poll:
            self._last_look = time.monotonic()
            for spec in list(self.elsewhere):
                if self._finished_elsewhere(spec):
                    self.elsewhere.remove(spec)
                elif self.claims.acquire(spec.run_id):  # its owner died (or let it go)
                    self.elsewhere.remove(spec)
                    if not self._finished_elsewhere(spec):
                        return spec
                    self.claims.release(spec.run_id)
        return None

    def finish(self, run_id: str) -> None:
        """The run's result is stored: let go of its claim."""
        self.claims.release(run_id)

    def _claim(self, spec: RunSpec) -> bool:
        if not self.claims.acquire(spec.run_id):
            self.elsewhere.append(spec)
            return False
        if self._finished_elsewhere(spec):  # checked after claiming: results are stored before a claim is released
            self.claims.release(spec.run_id)
            return False
        return True

    def _finished_elsewhere(self, spec: RunSpec) -> bool:
        """Whether another driver stored this run since we started (reported once, as an event)."""
        stamp = self.store.stamp(spec.run_id)
        if stamp is None or (stamp == self.baseline[spec.run_id] and stamp[0] != "ok"):
            return False
        self.on_event(("elsewhere", spec.run_id, stamp[0]))
        return True
