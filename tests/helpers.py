"""Helpers the test modules import (``from helpers import REPO, bpbench``): the repository root, the CLI in a
fresh process, the test environment's pip, a package installed for the duration, a tiny study run in-process."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bpbench(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the bpbench CLI in a fresh process (the working tree's code)."""
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bpbench", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"bpbench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def pip(*args: str, timeout: float = 600) -> None:
    """Run the test environment's pip."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"pip {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


@contextmanager
def installed(source: Path, distribution: str, editable: bool = False) -> Iterator[None]:
    """Install the package at ``source`` into the test environment for the duration (offline:
    the build tools come from the environment); uninstalls it afterwards, and first any copy
    a killed session left behind."""
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", distribution], capture_output=True)
    pip(
        "install", "--no-deps", "--no-build-isolation", "--no-index", *(["-e"] if editable else []), str(source)
    )  # offline: build tools from here
    importlib.invalidate_caches()
    try:
        yield
    finally:
        pip("uninstall", "-y", distribution)
        importlib.invalidate_caches()


def run_tiny_study(root: Path, toml: str) -> Path:
    """Write ``toml`` to ``root/tiny.toml``, run it in this process; returns the results folder."""
    from bpbench.experiments.front.cli import main

    (root / "tiny.toml").write_text(toml)
    assert main(["run", str(root / "tiny.toml"), "--out", str(root / "out"), "--executor", "inline"]) == 0
    return root / "out"
