"""Shared fixtures: one torch thread per test process, the tests' own task cache, the digits task loaded once
per session, a real entry-point plugin. Helpers the test modules import live in helpers.py."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

from bpbench.tasks.base import TaskData
from bpbench.tasks.digits import Digits

# Re-exported for the test modules that still import them from here; new code imports from helpers.
from helpers import REPO, bpbench, installed, pip, run_tiny_study  # noqa: F401

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def task_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' own task cache (shared by every process they start), not the user's."""
    folder = tmp_path_factory.mktemp("task-cache")
    os.environ["BPBENCH_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def digits() -> TaskData:
    """scikit-learn's digits with the default split, loaded once for the whole session (read, never modify)."""
    return Digits().load(Digits.Params())


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

ENTRY_POINTS = textwrap.dedent("""
    [bpbench.learners]
    exploding = bpbench_testplugins:Exploding
    crashing = bpbench_testplugins:Crashing
    killing = bpbench_testplugins:Killing
    killed_once = bpbench_testplugins:KilledOnce
    sleeping = bpbench_testplugins:Sleeping
    slow = bpbench_testplugins:Slow
    needs_missing_dep = bpbench_missing_dependency_xyz:Learner
""")


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
