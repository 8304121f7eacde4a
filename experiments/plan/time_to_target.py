"""The time-to-target measures, defined once: the cost a run had spent when its validation accuracy
first reached its task's target (``report/scoring.py`` computes them). Part of the measurement
catalog (``plan/catalog.py``), kept apart because the command line reads it without pandas.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimeToTarget:
    """One time-to-target measure: the cost a run had spent at its first evaluation whose validation
    accuracy reached its task's target. ``name``: what ``--measure`` takes; ``column``: the per-run
    column (``Results.summary``, the summary table's ``--columns``); ``curve``: the per-epoch curve
    column it is read from; ``header``/``fmt``/``scale``: the summary table's cell; ``words``: prose."""

    name: str
    curve: str
    header: str
    words: str
    fmt: str = ".3g"
    scale: float = 1.0

    @property
    def column(self) -> str:
        return f"ttt_{self.name}"


# in the summary table's column order
TIME_TO_TARGET: tuple[TimeToTarget, ...] = (
    TimeToTarget("epochs", "epoch", "epochs to target", "epochs"),
    TimeToTarget("flops", "flops", "GFLOPs to target", "training FLOPs", scale=1e9),
    TimeToTarget("seconds", "seconds", "s to target", "training seconds"),
    TimeToTarget("samples", "samples", "samples to target", "training samples"),
)


def time_to_target(name: str) -> TimeToTarget:
    """The time-to-target measure ``name``; a ValueError naming the allowed ones."""
    for measure in TIME_TO_TARGET:
        if measure.name == name:
            return measure
    raise ValueError(f"--measure {name!r}: allowed: {', '.join(m.name for m in TIME_TO_TARGET)}")
