"""Run claims: two drivers on one results folder split its runs instead of both running all.

Before a driver starts a run it claims it: it atomically creates a claim file naming its
host, pid and start time. A claim is refreshed (its mtime touched) while the run goes on,
and released (deleted) once the run's result is stored. A claim whose owner is dead is
taken over. The owner counts as dead when

- it ran on this host (same host name and pid namespace) and its pid is gone (or a zombie), or
- the claim has not been refreshed for ``timeout`` seconds (any host: a crashed machine, a
  killed SLURM job, a reused pid).

Layout: ``DIR/claims/<run_id>/<generation>``. Creation uses ``O_CREAT | O_EXCL`` (atomic on
local file systems and NFS v3+). Taking over a stale claim creates the next generation, so of
two drivers that judge the same claim stale, exactly one wins; the newest generation is the
claim. Claims hold no results: deleting ``claims/`` while no driver runs is always safe.
A released run's folder is removed once empty. A claim file that is not a JSON table is
named in a warning and judged by its age alone; one with an impossible time (far in the future)
or left empty is taken over with a warning naming it; files get the user's umask.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bpbench.experiments.store.dataset import warn
from bpbench.experiments.store.safe_paths import UnsafePathError

TIMEOUT_S = 120.0  # a claim not refreshed for this long is stale (keep well above clock skew between hosts)
REFRESH_S = 20.0  # how often a driver touches the claims it holds
FUTURE_S = 60.0  # a claim modified further in the future than this is impossible (clock skew is less)
EMPTY_S = 5.0  # a claim still empty this long after its creation was never written


def host_identity() -> dict[str, str]:
    """This process's host name and pid namespace (pids are comparable only within both)."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (macOS): the host name alone identifies the machine
        pidns = ""
    return {"host": socket.gethostname(), "pidns": pidns}


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc, or it exited just now: os.kill's answer stands
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def impossible_claim(path: Path, age: float, text: str) -> str | None:
    """Why a claim cannot belong to a live driver (None: it may): a modification time further in
    the future than clocks drift (it would never grow stale), or no content long after creation
    (a full disk or a killed driver; a live claimant writes its content at once)."""
    if age < -FUTURE_S:
        return f"was modified {-age:.0f} s in the future (clock skew allows {FUTURE_S:g} s)"
    if not text and age > EMPTY_S:
        return f"is empty {age:.0f} s after it was created (a full disk or a killed driver)"
    return None


class Claims:
    """The claims this driver holds under ``root`` (normally ``DIR/claims``), refreshed by a thread."""

    def __init__(self, root: Path, timeout: float = TIMEOUT_S, refresh: float = REFRESH_S) -> None:
        if not 0 < refresh < timeout:
            raise ValueError(f"claim refresh = {refresh} s, timeout = {timeout} s: need 0 < refresh < timeout")
        self.root = Path(root)
        if self.root.is_symlink():
            raise UnsafePathError(
                f"{self.root} is a symbolic link: claims are written only inside the results "
                "folder; remove it and run again"
            )
        self.timeout, self.refresh = timeout, refresh
        self.me = {**host_identity(), "pid": os.getpid()}
        self.held: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading ------------------------------------------------------------------------------
    def owner(self, run_id: str) -> dict[str, Any] | None:
        """The newest claim on ``run_id`` (its content plus ``age_s``), or None when unclaimed."""
        top = self._newest(run_id)
        return None if top is None else self._read(top)

    def _newest(self, run_id: str) -> Path | None:
        folder = self.root / run_id
        gens = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
        return folder / str(max(gens)) if gens else None

    def _read(self, path: Path) -> dict[str, Any] | None:
        """A claim's content and age; None if it vanished. A half-written claim reads as {}."""
        try:
            age = time.time() - path.lstat().st_mtime
            text = path.read_bytes().decode() if not path.is_symlink() else "{}"
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            warn(f"claim file {path} is unreadable ({type(exc).__name__}); judged by its age only")
            return {"age_s": max(0.0, age)}
        impossible = impossible_claim(path, age, text)
        if impossible:
            warn(f"claim file {path} {impossible}: taken over")
            return {"age_s": math.inf}
        age = max(0.0, age)
        try:
            content = json.loads(text) if text else {}
        except (ValueError, RecursionError):  # created but not yet written (or garbage): judged by its age only
            content = {}
        if not isinstance(content, dict):
            warn(f"claim file {path} holds a {type(content).__name__}, not a claim; judged by its age only")
            content = {}
        if not isinstance(content.get("pid", 0), int) or isinstance(content.get("pid"), bool):
            content.pop("pid")
        return {**content, "age_s": age}

    def alive(self, claim: dict[str, Any]) -> bool:
        """Whether the owner of ``claim`` (as read by ``owner``) is to be presumed alive."""
        if claim["age_s"] > self.timeout:
            return False
        if claim.get("host") == self.me["host"] and claim.get("pidns") == self.me["pidns"] and "pid" in claim:
            return pid_running(int(claim["pid"]))
        return True

    # -- claiming -----------------------------------------------------------------------------
    def acquire(self, run_id: str) -> bool:
        """Claim ``run_id``; False when a live owner holds it (or another driver won the race)."""
        if (self.root / run_id).is_symlink():
            raise UnsafePathError(f"{self.root / run_id} is a symbolic link; remove it and run again")
        top = self._newest(run_id)
        generation = 0
        if top is not None:
            claim = self._read(top)
            if claim is None or self.alive(claim):  # vanished under us (released or taken over): ask again later
                return False
            generation = int(top.name) + 1
        path = self.root / run_id / str(generation)
        content = {
            **self.me,
            "run_id": run_id,
            "token": uuid.uuid4().hex,
            "start_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        for _ in range(3):  # another driver may remove the (empty) folder between mkdir and open
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o666)
                break
            except FileExistsError:
                return False
            except FileNotFoundError:
                continue
        else:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(content))
        if top is not None:
            for old in top.parent.iterdir():
                if old.name.isdigit() and int(old.name) < generation:
                    old.unlink(missing_ok=True)
        with self._lock:
            self.held[run_id] = path
        self._start_refresher()
        return True

    def release(self, run_id: str) -> None:
        """Give up the claim on ``run_id`` (after its result is stored, or when not running it)."""
        with self._lock:
            path = self.held.pop(run_id, None)
        if path is not None:
            path.unlink(missing_ok=True)
            # the run's folder, once no claim is left in it; OSError: not empty (a newer claim) or gone already
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    def release_all(self) -> None:
        for run_id in list(self.held):
            self.release(run_id)

    def close(self) -> None:
        """Release every held claim and stop refreshing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release_all()

    def _start_refresher(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._refresh_loop, name="bpbench-claims", daemon=True)
            self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh):
            self.touch()

    def touch(self) -> None:
        """Refresh every held claim; a claim that vanished (taken over after a stall) is dropped."""
        with self._lock:
            held = dict(self.held)
        for run_id, path in held.items():
            try:
                os.utime(path)
            except FileNotFoundError:
                with self._lock:
                    self.held.pop(run_id, None)
