"""Which plugins import: what ``bpbench list`` reports, remembered until anything it depends on changes.

Knowing whether a learner is available means importing it (torch, DEAP, snntorch ...: seconds).
``plugin_status(groups)`` imports every entry point of ``groups`` once (through
``Registry.discover``, so a failing import is the same "unavailable: reason") and stores the
answer with everything that could change it; a later call gives the stored answer only when
all of it is unchanged, else it imports again. The key:

- the interpreter (executable, version), ``sys.path`` and the environment (less the shell's own
  bookkeeping variables: ``_``, ``OLDPWD``, ``PWD``, ``SHLVL``);
- every entry point of the groups (name, target, distribution and version);
- size and modification time of the file of every module loaded at the time (the plugins, their
  dependencies, bpbench itself), and the modification time of every folder holding one and of
  every ``sys.path`` folder: a module added, removed or edited, or a package installed or
  removed anywhere on the path, changes one of them (Python's own import caches use the
  same folder times to notice new modules).

The file is ``CACHE/plugins-<hash of interpreter and sys.path>.json`` (CACHE: ``$BPBENCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/bpbench``, else ``~/.cache/bpbench``, as for the task cache);
``BPBENCH_CACHE=off`` turns it off. An unreadable or unwritable file only means importing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

FORMAT = 3  # 2: tasks whose check fails (a missing optional dependency) are unavailable; 3: or needing data


@dataclass(frozen=True)
class Status:
    """One plugin as ``bpbench list`` shows it."""

    name: str
    target: str
    distribution: str | None
    version: str | None
    error: str | None  # None: it imports

    @property
    def available(self) -> bool:
        return self.error is None


def cache_file() -> Path | None:
    """Where the answer is kept for this interpreter; None when caching is off."""
    if os.environ.get("BPBENCH_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    if os.environ.get("BPBENCH_CACHE_DIR"):
        folder = Path(os.environ["BPBENCH_CACHE_DIR"])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        folder = (Path(xdg) if xdg else Path.home() / ".cache") / "bpbench"
    where = json.dumps([sys.executable, sys.path])  # `bpbench` and `python -m bpbench` differ in sys.path[0]
    return folder / f"plugins-{hashlib.sha256(where.encode()).hexdigest()[:16]}.json"


def _entry_points(groups: tuple[str, ...]) -> list[list[Any]]:
    out = []
    for group in groups:
        for ep in entry_points(group=group):
            dist = ep.dist
            out.append(
                [group, ep.name, ep.value, dist.metadata["Name"] if dist else None, dist.version if dist else None]
            )
    return sorted(out, key=lambda e: (e[0], e[1], e[2]))


SHELL_BOOKKEEPING = ("_", "OLDPWD", "PWD", "SHLVL")  # set by the shell for every command; no import reads them


def _key(groups: tuple[str, ...]) -> dict[str, Any]:
    env = sorted((k, v) for k, v in os.environ.items() if k not in SHELL_BOOKKEEPING)
    path = [p or os.getcwd() for p in sys.path]  # "" (python -c, the REPL): the current folder
    return {
        "format": FORMAT,
        "executable": sys.executable,
        "version": sys.version,
        "path": path,
        "environment": hashlib.sha256(json.dumps(env).encode()).hexdigest(),
        "entry_points": _entry_points(groups),
    }


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _watched() -> tuple[dict[str, list[int] | None], dict[str, int | None]]:
    """(module file -> [mtime, size], folder -> mtime) of every loaded module and sys.path entry."""
    files: dict[str, list[int] | None] = {}
    folders = set(p or os.getcwd() for p in sys.path)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            files[path] = _stat(path)
            folders.add(os.path.dirname(path))
        folders.update(_package_folders(module))
    return files, {f: (s[0] if (s := _stat(f)) else None) for f in sorted(folders)}


def _package_folders(module: object) -> list[str]:
    """A package's ``__path__`` folders (namespace packages included); [] for a plain module or
    an object in sys.modules whose ``__path__`` is not a list of folders (torch.classes)."""
    paths = getattr(module, "__path__", None)
    try:
        return [p for p in paths if isinstance(p, str)] if paths is not None else []
    except TypeError:  # not iterable
        return []


def _unchanged(cached: dict[str, Any]) -> bool:
    return all(_stat(path) == stat for path, stat in cached["files"].items()) and all(
        ((s := _stat(path)) and s[0]) == mtime for path, mtime in cached["folders"].items()
    )


def _discover(groups: tuple[str, ...]) -> dict[str, list[Status]]:
    from bpbench.experiments.plan.registry import TASK_GROUP, Registry

    out = {}
    for group in groups:
        registry = Registry.discover(group, group)
        out[group] = [
            Status(
                e.name,
                e.target,
                e.distribution,
                e.version,
                e.error or (task_problem(e.obj) if group == TASK_GROUP else None),
            )
            for _, e in sorted(registry.entries.items())
        ]
    return out


def task_problem(task_cls: Any) -> str | None:
    """Why a task that imports still cannot load: a missing optional package, as its ``check``
    says (naming the extra to install); None when it can. A data folder that its default options
    do not find is not counted: such tasks run once given a path (``[tasks.mnist] path``)."""
    from bpbench.tasks.official import DataNotGiven

    try:
        task_cls().check(task_cls.Params())
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    except DataNotGiven as exc:  # user data with no default folder (cifar10, shd): say which files it needs
        return str(exc)
    except FileNotFoundError:
        return None
    return None


def plugin_status(groups: tuple[str, ...]) -> dict[str, list[Status]]:
    """Group -> its plugins (by name) with whether each imports and why not; imports only
    when the stored answer may be out of date."""
    path, key = cache_file(), _key(groups)
    if path is not None:
        try:
            cached = json.loads(path.read_text())
            if cached["key"] == key and _unchanged(cached):
                return {g: [Status(**s) for s in entries] for g, entries in cached["status"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or unreadable: import and write it anew
    status = _discover(groups)
    if path is not None:
        files, folders = _watched()
        record = {
            "key": key,
            "files": files,
            "folders": folders,
            "status": {g: [asdict(s) for s in entries] for g, entries in status.items()},
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError:
            return status  # a read-only cache folder: the answer is right, just not remembered
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, path)
        except OSError:
            pass  # a full disk, say: as above
        finally:
            Path(tmp).unlink(missing_ok=True)
    return status
