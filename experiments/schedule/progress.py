"""Progress over runs and epochs: tqdm bars on a terminal, one line per finished run otherwise."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.schedule.execute import Event, Outcome


class Progress:
    """Consumes executor events for ``specs`` and shows progress on stderr."""

    def __init__(self, specs: list[RunSpec], skipped: int) -> None:
        self.specs = {s.run_id: s for s in specs}
        self.done = 0
        self.elsewhere = 0  # runs another driver on the same folder finished meanwhile
        self.seen: dict[str, int] = {}
        self.interactive = sys.stderr.isatty()
        total_epochs = sum(s.budget["epochs"] for s in specs)
        self.runs = tqdm(total=len(specs), desc="runs", unit="run", position=0, disable=not self.interactive)
        self.epochs = tqdm(total=total_epochs, desc="epochs", unit="ep", position=1, disable=not self.interactive)
        if skipped:
            self.say(f"skipping {skipped} completed run(s) already in the output folder")

    def say(self, text: str) -> None:
        if self.interactive:
            tqdm.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, event: Event) -> None:
        kind, run_id = event[0], event[1]
        if kind == "epoch":
            self.seen[run_id] = self.seen.get(run_id, 0) + 1
            self.epochs.update(1)
        elif kind == "done":
            outcome: Outcome = event[2]
            if outcome.status == "ok":
                s: dict[str, Any] = outcome.summary
                self._finished(run_id, f"test acc {s['test_accuracy']:.3f}, {s['train_seconds']:.1f} s")
            else:
                self._finished(run_id, f"FAILED: {outcome.error}")
        elif kind == "elsewhere":
            self.elsewhere += 1
            self._finished(run_id, f"{event[2]}, by another driver")

    def _finished(self, run_id: str, msg: str) -> None:
        spec = self.specs[run_id]
        self.done += 1
        self.runs.update(1)
        # epochs a run did not reach (max_seconds, failure, another driver's run) still leave the bar
        self.epochs.update(spec.budget["epochs"] - self.seen.pop(run_id, 0))
        self.say(f"[{self.done}/{len(self.specs)}] {spec.describe()} ({run_id}): {msg}")

    def close(self) -> None:
        self.epochs.close()
        self.runs.close()
