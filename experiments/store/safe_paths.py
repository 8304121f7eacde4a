"""A results folder is a boundary: names checked, paths kept inside, no write through a symlink.

Results folders travel (git, mail, merged across machines), so their contents are input from
someone else. Everything here is for building a path under a folder from a name that came
from a file, a label or a user:

- ``valid_run_id(name)``: a run id is the 16 hex digits ``RunSpec.run_id`` computes, nothing else;
- ``inside(root, path)``: ``path`` resolved (symlinks followed) stays under ``root`` resolved;
- ``unsafe_link(root, path)``: the first symlink between ``root`` and ``path`` (None: none), so a
  writer refuses to write through ``runs/<id>`` or ``figures/`` when they point elsewhere;
- ``file_mode()``: the mode a new file gets under the process's umask (temporary files from
  ``tempfile.mkstemp`` are 0600, which a co-author in the same group cannot read);
- ``safe_name(text)``: a label as a file name: any string -> ASCII letters, digits, ``._-``,
  at most ``NAME_MAX`` characters, with a short hash whenever it had to change (two labels
  never share a file name).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

RUN_ID = re.compile(r"[0-9a-f]{16}")
NAME_MAX = 80  # characters of a sanitized name (file systems allow 255 bytes; room for suffixes)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafePathError(OSError):
    """A path under a results folder that bpbench refuses to use (the message names it and why)."""


def valid_run_id(name: object) -> bool:
    """Whether ``name`` has the form of a run id (16 lowercase hex digits)."""
    return isinstance(name, str) and RUN_ID.fullmatch(name) is not None


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink resolved, lies under ``root`` (resolved) or is it."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    return target == base or base in target.parents


def unsafe_link(root: Path, path: Path) -> Path | None:
    """The first existing symlink among ``path`` and its parents below ``root`` (None: none)."""
    root = Path(root)
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        return Path(path)  # not under root at all
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def check_writable(root: Path, path: Path) -> None:
    """Raise ``UnsafePathError`` unless ``path`` is under ``root`` with no symlink on the way
    (the file itself may be a symlink: ``atomic_write`` replaces the link, never its target)."""
    link = unsafe_link(root, Path(path).parent)
    if link is not None:
        raise UnsafePathError(
            f"refusing to write {path}: {link} is a symbolic link (or outside {root}); remove it and run again"
        )


def file_mode() -> int:
    """0o666 less this process's umask (read from /proc when it can be, else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def safe_name(text: str) -> str:
    """``text`` as a portable file name (see the module doc); unchanged when it already is one."""
    cleaned = _UNSAFE.sub("_", text).strip(".") or "_"
    if cleaned == text and len(text) <= NAME_MAX:
        return text
    tag = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[: NAME_MAX - 9]}-{tag}"
