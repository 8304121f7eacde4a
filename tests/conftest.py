"""Shared fixtures: one torch thread per test process, a real entry-point plugin, CLI helpers."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def task_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' own task cache (shared by every process they start), not the user's."""
    folder = tmp_path_factory.mktemp("task-cache")
    os.environ["BPBENCH_CACHE_DIR"] = str(folder)
    return folder

PLUGIN_MODULE = textwrap.dedent('''
    """Test plugins, installed through real entry points by tests/conftest.py."""
    import math
    import os
    import signal

    from bpbench.learners.backprop import Backprop, BackpropParams
    from bpbench.learners.base import StepOutput


    class Exploding(Backprop):
        """Backprop whose loss turns NaN on the task named 'fsdd' (a diverging run)."""
        def train_step(self, x, y):
            out = super().train_step(x, y)
            return StepOutput(math.nan, out.forward_samples) if self.task.name == "fsdd" else out


    class Crashing(Backprop):
        """Backprop that raises on the mnist5k task."""
        def train_step(self, x, y):
            if self.task.name == "mnist5k":
                raise RuntimeError("deliberate crash on mnist5k")
            return super().train_step(x, y)


    class Killing(Backprop):
        """Backprop that SIGKILLs its own process on the fsdd task (an out-of-memory kill, say)."""
        def train_step(self, x, y):
            if self.task.name == "fsdd":
                os.kill(os.getpid(), signal.SIGKILL)
            return super().train_step(x, y)


    class Sleeping(Backprop):
        """Backprop whose third training step never returns (a hung plugin)."""
        def train_step(self, x, y):
            self.steps_taken = getattr(self, "steps_taken", 0) + 1
            if self.steps_taken == 3:
                import time
                time.sleep(3600)
            return super().train_step(x, y)


    class Slow(Backprop):
        """Backprop that sleeps 0.2 s in every training step (a run long enough to kill its driver in)."""
        def train_step(self, x, y):
            import time
            time.sleep(0.2)
            return super().train_step(x, y)


    class KilledOnce(Backprop):
        """Backprop that SIGKILLs its own process the first time it trains on a task (a marker file
        in $BPBENCH_TEST_MARKERS remembers it); a retry of the run trains normally."""
        def train_step(self, x, y):
            marker = os.path.join(os.environ["BPBENCH_TEST_MARKERS"], f"killed_once-{self.task.name}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return super().train_step(x, y)
''')

ENTRY_POINTS = textwrap.dedent('''
    [bpbench.learners]
    exploding = bpbench_testplugins:Exploding
    crashing = bpbench_testplugins:Crashing
    killing = bpbench_testplugins:Killing
    killed_once = bpbench_testplugins:KilledOnce
    sleeping = bpbench_testplugins:Sleeping
    slow = bpbench_testplugins:Slow
    needs_missing_dep = bpbench_missing_dependency_xyz:Learner
''')


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a plugin module and its dist-info, as pip would install it."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "bpbench_testplugins.py").write_text(PLUGIN_MODULE)
    info = root / "bpbench_testplugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bpbench-testplugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def with_plugins(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the test plugins visible to this process and to the processes it starts."""
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir), str(REPO), os.environ.get("PYTHONPATH", "")]))
    return plugin_dir


def bpbench(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the bpbench CLI in a fresh process (the working tree's code)."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "bpbench", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"bpbench {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def pip(*args: str, timeout: float = 600) -> None:
    """Run the test environment's pip."""
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"pip {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


@contextmanager
def installed(source: Path, distribution: str, editable: bool = False) -> Iterator[None]:
    """Install the package at ``source`` into the test environment for the duration (offline:
    the build tools come from the environment); uninstalls it afterwards, and first any copy
    a killed session left behind."""
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", distribution], capture_output=True)
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", *(["-e"] if editable else []), str(source))  # offline: build tools from here
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
