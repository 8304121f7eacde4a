"""Worker warm-up (issue 14, goal 4): one-time imports happen before the first run, and change nothing."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import torch

from bpbench.experiments.run.warmup import warm_up
from helpers import REPO

FIRST_RUN = textwrap.dedent("""
    import sys
    import torch
    from bpbench.experiments.plan.registry import learner_registry, task_registry
    from bpbench.experiments.run.runner import LoadedTasks, run
    from bpbench.experiments.plan.study import expand
    from bpbench.experiments.run.warmup import warm_up

    torch.set_num_threads(1)
    learners, tasks, cache = learner_registry(), task_registry(), LoadedTasks()
    raw = {"tasks": ["digits"], "model": {"hidden": [16]}, "budget": {"epochs": 1},
           "learners": {"backprop": {}, "snn_bptt": {"num_steps": 3}, "ga": {"population": 8}}}
    specs = expand("t", raw, learners, tasks).runs
    cache.get(specs[0], tasks)  # the data (the machine-wide task cache), not an import
    assert "torch._dynamo" not in sys.modules, "imported before the warm-up: the test shows nothing"
    warm_up(torch.device("cpu"))
    assert "torch._dynamo" in sys.modules
    for spec in specs:
        before = set(sys.modules)
        run(spec, learners, tasks, torch.device("cpu"), cache)
        new = sorted(m for m in set(sys.modules) - before if not m.startswith("encodings."))
        assert not new, f"{spec.learner}'s first run imported {new[:10]}"
    print("ok")
""")


def test_first_runs_import_nothing_after_the_warm_up() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", FIRST_RUN], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_warm_up_changes_no_random_stream() -> None:
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    warm_up(torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
