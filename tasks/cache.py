"""A machine-wide cache of loaded tasks: a data set is parsed once per machine, not once per worker.

``load_cached(task, params)`` returns the same ``TaskData`` as ``task.load(params)``. The
first call on a machine loads, splits and normalizes as usual and writes the normalized
arrays to the cache folder; later calls (in any process) read them back. The entry's key is
a hash of the task's name, its options, the bytes of every source file the task reads
(``Task.sources``) and the source code of the task's module, of ``tasks/base.py`` and of the
``bpbench.tasks`` helpers the task's module imports (``code_files``), so a
changed data file, option or loading code never serves stale arrays. A task whose
``sources`` is None (the default for plugins) is not cached.

Files (written atomically; a lock makes concurrent workers build an entry once)::

    CACHE/tasks/<task>-<key>.npz    train_x, train_y, val_x, val_y, test_x, test_y
    CACHE/tasks/<task>-<key>.json   task info and the BLAKE2b digest of the .npz

An entry whose .npz does not match its digest, or that cannot be read, is reported with a
warning and rebuilt. CACHE is ``$BPBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/bpbench``, else
``~/.cache/bpbench``; ``BPBENCH_CACHE=off`` turns caching off. ``clear()`` empties it
(``bpbench cache clear``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from bpbench.tasks import base
from bpbench.tasks.base import Split, Task, TaskData, TaskInfo

SPLITS = ("train", "val", "test")
FORMAT = 1  # bump when the file layout changes


class CacheWarning(UserWarning):
    """A cache entry was unusable (corrupt, unreadable) and is rebuilt, or the cache folder is not writable."""


def cache_dir() -> Path | None:
    """The cache folder, or None when ``BPBENCH_CACHE=off``."""
    if os.environ.get("BPBENCH_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    if os.environ.get("BPBENCH_CACHE_DIR"):
        return Path(os.environ["BPBENCH_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bpbench"


def _digest_file(path: Path, h: Any) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)


def code_files(task: Task) -> list[Path]:
    """The loading code's source files: the task's module, ``tasks/base.py``, and each
    ``bpbench.tasks`` module the task's module takes names from (shared helpers such as
    ``tasks/sequences.py``). A task defined in a notebook cell has no source file; its
    options and data still count."""
    module = inspect.getmodule(type(task))
    names = {base.__name__}
    if module is not None:
        names.add(module.__name__)
        names |= {
            v.__module__
            for v in vars(module).values()
            if isinstance(getattr(v, "__module__", None), str) and v.__module__.startswith("bpbench.tasks.")
        }
    files = {inspect.getsourcefile(sys.modules[n]) for n in names if n in sys.modules}
    return [Path(f) for f in sorted(f for f in files if f)]


def entry_key(task: Task, params: Any, sources: list[Path]) -> str:
    """Hex key of (task name, options, source file bytes, loading code) for ``task`` with ``params``."""
    h = hashlib.blake2b(digest_size=16)
    options = (
        dataclasses.asdict(params) if dataclasses.is_dataclass(params) and not isinstance(params, type) else params
    )
    h.update(json.dumps({"format": FORMAT, "task": task.name, "params": options}, sort_keys=True, default=str).encode())
    for module in code_files(task):
        _digest_file(module, h)
    for path in sources:
        h.update(str(path).encode())
        _digest_file(path, h)
    return h.hexdigest()


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    _digest_file(path, h)
    return h.hexdigest()


def _read(npz: Path, manifest: Path) -> TaskData:
    """The entry's TaskData; raises ValueError (or an OSError) if it is incomplete or corrupt."""
    meta = json.loads(manifest.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')} != {FORMAT}")
    if _file_digest(npz) != meta["digest"]:
        raise ValueError("the arrays do not match their recorded digest")
    with np.load(npz) as arrays:
        splits = {s: Split(torch.from_numpy(arrays[f"{s}_x"]), torch.from_numpy(arrays[f"{s}_y"])) for s in SPLITS}
    info = meta["info"]
    return TaskData(
        TaskInfo(info["name"], info["modality"], tuple(info["input_shape"]), info["n_classes"]),
        splits["train"],
        splits["val"],
        splits["test"],
    )


def _write(data: TaskData, npz: Path, manifest: Path) -> None:
    arrays = {}
    for s in SPLITS:
        split: Split = getattr(data, s)
        arrays[f"{s}_x"], arrays[f"{s}_y"] = split.x.numpy(), split.y.numpy()

    def save(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    _write_atomic(npz, save)
    meta = {"format": FORMAT, "digest": _file_digest(npz), "info": dataclasses.asdict(data.info)}
    _write_atomic(manifest, lambda p: p.write_text(json.dumps(meta)))


def load_cached(task: Task, params: Any) -> TaskData:
    """``task.load(params)``, read from the machine's cache when an intact entry exists."""
    folder, sources = cache_dir(), task.sources(params)
    if folder is None or sources is None:
        return task.load(params)
    folder = folder / "tasks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.warn(
            f"task cache folder {folder} is not usable ({exc}); loading {task.name} without it",
            CacheWarning,
            stacklevel=2,
        )
        return task.load(params)
    stem = f"{task.name}-{entry_key(task, params, sources)}"
    npz, manifest = folder / f"{stem}.npz", folder / f"{stem}.json"
    with FileLock(str(folder / f"{stem}.lock")):
        if manifest.is_file() and npz.is_file():
            try:
                return _read(npz, manifest)
            except (ValueError, KeyError, OSError, EOFError) as exc:
                warnings.warn(
                    f"task cache entry {npz} is unusable ({type(exc).__name__}: {exc}); rebuilding it",
                    CacheWarning,
                    stacklevel=2,
                )
        data = task.load(params)
        _write(data, npz, manifest)
        return data


def clear() -> tuple[int, int]:
    """Delete every cached task; returns (files removed, bytes freed)."""
    folder = cache_dir()
    if folder is None or not (folder / "tasks").is_dir():
        return 0, 0
    files = freed = 0
    for path in (folder / "tasks").iterdir():
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
            files += 1
    return files, freed
