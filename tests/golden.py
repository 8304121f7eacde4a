"""Golden results of a tiny study: every built-in learner, the results it gave before a change
(remade with commit 602ec0d, before the harness moved into rooms), so a test can show a refactoring
left them unchanged.

``python tests/golden.py`` writes ``tests/golden_results.json`` from the code it imports
(run it with the old code first on ``PYTHONPATH`` to make the file). Results are exact only
on the same torch build, CPU instruction set and processor model; the file records them, and
``tests/test_same_results.py`` compares within a tolerance that absorbs last-bit differences
between processors (and the spiking learners only before their first step).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

GOLDEN = Path(__file__).with_name("golden_results.json")
TIMING = {"train_seconds"}  # wall-clock figures: never the same twice

STUDY: dict[str, Any] = {
    "seeds": 1,
    "tasks": ["digits", "fsdd"],
    "model": {"hidden": [16]},
    "budget": {"epochs": 2},
    "schedule": {"health_every": 7},
    "learners": {
        "backprop": {"lr": 0.003},
        "backprop_sgd": {
            "learner": "backprop",
            "optimizer": "sgd",
            "lr": 0.05,
            "weight_decay": 0.001,
            "tasks": ["digits"],
        },
        "fa_wd": {"learner": "fa", "lr": 0.003, "weight_decay": 0.001, "tasks": ["digits"]},
        "fa": {"lr": 0.003},
        "dfa": {"lr": 0.003},
        "sign_symmetry": {"lr": 0.003},
        "snn_bptt": {"num_steps": 4, "lr": 0.003},
        "snn_bptt_rate": {
            "learner": "snn_bptt",
            "num_steps": 4,
            "lr": 0.003,
            "encoding": "rate",
            "readout": "spikes",
            "tasks": ["digits"],
        },
        "snn_dfa": {"num_steps": 4, "lr": 0.003},
        "es": {"population": 16, "batch_size": 128},
        "ga": {"population": 16, "truncation": 4, "batch_size": 128},
        "ga_cross": {
            "learner": "ga",
            "population": 16,
            "selection": "tournament",
            "crossover": 0.5,
            "batch_size": 128,
            "tasks": ["digits"],
        },
        "cmaes": {"population": 16, "batch_size": 256, "tasks": ["digits"], "model": {"hidden": []}},
    },
}


def cpu_model() -> str:
    """The processor's model name (Linux), or the platform's word for it: float results of the same
    torch build and instruction set still differed between two processor models here."""
    import platform

    try:
        with open("/proc/cpuinfo") as lines:
            names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor()


def environment() -> dict[str, str]:
    """What exact float results depend on: the torch build, the CPU's vector instruction set and model."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
    }


def collect() -> dict[str, list[list[Any]]]:
    """Run the study inline, one thread: "label/task" -> rows [epoch, step, split, metric, layer, value]."""
    from bpbench.experiments.plan.registry import learner_registry, task_registry
    from bpbench.experiments.plan.study import expand
    from bpbench.experiments.run.runner import LoadedTasks, run

    torch.set_num_threads(1)
    learners, tasks, cache = learner_registry(), task_registry(), LoadedTasks()
    out = {}
    for spec in expand("golden", STUDY, learners, tasks).runs:
        result = run(spec, learners, tasks, torch.device("cpu"), cache)
        out[f"{spec.label}/{spec.task_label}"] = [
            [r["epoch"], r["step"], r["split"], r["metric"], r["layer"], r["value"]]
            for r in result.rows
            if r["metric"] not in TIMING
        ]
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({"environment": environment(), "runs": collect()}, separators=(",", ":")))
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)", file=sys.stderr)
