"""Plugin discovery through Python entry points: the route built-ins and third parties share.

``Registry.discover("bpbench.learners")`` lists every entry point of the group. Loading
one that fails to import (a missing optional dependency, say) gives an entry marked
unavailable with the reason, instead of a crash; asking to *use* it raises that reason.
Each entry names the distribution (installed package) that provides it, with its version.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

LEARNER_GROUP = "bpbench.learners"
TASK_GROUP = "bpbench.tasks"


class UnknownNameError(ValueError):
    """A name that is not registered (the message lists what is)."""


@dataclass(frozen=True)
class Entry:
    """One registered plugin: ``obj`` is the loaded class, or None with ``error`` set.

    ``distribution``/``version``: the installed package whose entry point registers it
    (None for an object given directly to ``Registry.discover(extra=...)``).
    """

    name: str
    target: str  # "module:attr" of the entry point
    obj: Any | None
    error: str | None
    distribution: str | None = None
    version: str | None = None

    @property
    def available(self) -> bool:
        return self.obj is not None


def provider(ep: EntryPoint) -> tuple[str | None, str | None]:
    """(distribution name, version) of the installed package that declares ``ep``."""
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)


def find_provider(group: str, name: str) -> dict[str, str | None]:
    """Which installed package registers ``name`` in ``group``, without importing it."""
    for ep in entry_points(group=group, name=name):
        distribution, version = provider(ep)
        return {"name": name, "target": ep.value, "distribution": distribution, "version": version}
    return {"name": name, "target": None, "distribution": None, "version": None}


class Registry:
    """An immutable snapshot of one entry-point group (or of explicit extra entries)."""

    def __init__(self, kind: str, entries: dict[str, Entry]) -> None:
        self.kind = kind
        self.entries = dict(entries)

    @classmethod
    def discover(cls, group: str, kind: str, extra: dict[str, Any] | None = None) -> Registry:
        """Load every entry point of ``group``; ``extra`` adds name -> object (tests, notebooks)."""
        entries: dict[str, Entry] = {}
        for ep in entry_points(group=group):
            try:
                obj, error = ep.load(), None
            except ImportError as exc:  # a missing dependency: listed as unavailable, not a crash
                obj, error = None, f"{type(exc).__name__}: {exc}"
            entries[ep.name] = Entry(ep.name, ep.value, obj, error, *provider(ep))
        for name, obj in (extra or {}).items():
            entries[name] = Entry(name, f"{obj.__module__}:{obj.__qualname__}", obj, None)
        return cls(kind, entries)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> Any:
        """The loaded object registered as ``name``; a clear error if unknown or unavailable."""
        if name not in self.entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names()) or '(none)'}")
        entry = self.entries[name]
        if entry.obj is None:
            raise UnknownNameError(f"{self.kind} {name!r} is unavailable: {entry.error}")
        return entry.obj


def learner_registry(extra: dict[str, Any] | None = None) -> Registry:
    return Registry.discover(LEARNER_GROUP, "learner", extra)


def task_registry(extra: dict[str, Any] | None = None) -> Registry:
    return Registry.discover(TASK_GROUP, "task", extra)
