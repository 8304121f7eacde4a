"""What pruning saves: the same tuned study run with ``pruner = "none"`` and with a pruner.

The study (default: a small one on digits; ``--study NAME_OR_PATH`` with ``--tasks``,
``--learners`` and ``--repeats`` takes a slice of another, such as ``tuned``) is run twice into
fresh folders, inline (one run at a time, so seconds add up), once per pruner. Printed per arm:
trials (over every learner x task and repeat), pruned trials, tuning runs, the training FLOPs and
the wall seconds of every tuning run (``report.tuning_cost``), the final and hand-picked runs,
and the driver's wall seconds. Pruning decisions depend on the validation curves, so the saving
is this study's; wall seconds depend on the machine and its load (the two arms run in turn).

    python -m benchmarks.tuning_cost [--pruner successive_halving]
    python -m benchmarks.tuning_cost --study tuned --tasks digits --learners backprop,pc --repeats 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from bpbench.experiments.front.api import run
from bpbench.experiments.plan.builtin import builtin_studies
from bpbench.experiments.report.tuning import trials
from bpbench.experiments.report.tuning_cost import tuning_cost

SMALL = """
tasks = ["digits"]
[model]
hidden = [64]
[budget]
epochs = 4
[tuning]
trials = 8
seeds_per_trial = 2
final_seeds = 2
compare_default = true
[learners.backprop]
lr = 0.001
[learners.backprop.search]
lr = { low = 3e-5, high = 3e-2, log = true }
[learners.fa]
lr = 0.001
[learners.fa.search]
lr = { low = 3e-5, high = 3e-2, log = true }
"""


def dump(value: Any) -> str:
    """A TOML value (the study tables hold numbers, strings, booleans, lists and inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {dump(v)}" for k, v in value.items()) + " }"
    return repr(value)


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    scalars = [f"{k} = {dump(v)}" for k, v in table.items() if not isinstance(v, dict) or _inline(v)]
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(line + "\n" for line in scalars)
    for key, value in table.items():
        if isinstance(value, dict) and not _inline(value):
            text += to_toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def _inline(value: dict[str, Any]) -> bool:
    """A search range ({low, high, ...}) is written inline."""
    return "low" in value and "high" in value


def study_slice(source: str, tasks: list[str], learners: list[str], repeats: int | None) -> dict[str, Any]:
    """The study ``source`` (a path or a built-in name) cut to ``tasks``, ``learners`` and ``repeats``."""
    path = Path(source) if Path(source).exists() else builtin_studies()[source]
    raw = tomllib.loads(path.read_text())
    raw.pop("description", None)
    if tasks:
        raw["tasks"] = tasks
    if learners:
        raw["learners"] = {k: v for k, v in raw["learners"].items() if k in learners}
        for table in raw["learners"].values():
            if table.get("reference") not in (None, *learners):
                table.pop("reference")
    if repeats:
        raw["tuning"]["repeats"] = repeats
    return raw


def measure(raw: dict[str, Any], pruner: str, folder: Path) -> dict[str, float]:
    """Run ``raw`` with ``pruner``; its tuning cost summed over learners x tasks, and wall seconds."""
    raw = {**raw, "tuning": {**raw["tuning"], "pruner": pruner}}
    study = folder / f"{pruner}.toml"
    study.write_text(to_toml(raw))
    t0 = time.perf_counter()
    results = run(study, out=folder / pruner, executor="inline", progress=False)
    wall = time.perf_counter() - t0
    runs = results.run_table()
    table = trials(runs)
    cost = tuning_cost(table)
    phases = [{"trial": "tuning"}.get(p, p) for p in [*runs.runs["phase"], *runs.failed.get("phase", [])]]
    return {
        "trials": float(cost["trials"].sum()),
        "pruned trials": float(table["pruned"].sum()),
        "tuning runs": float(cost["runs"].sum()),
        "tuning GFLOPs": float(cost["train_flops"].sum()) / 1e9,
        "tuning run s": float(cost["wall_seconds"].sum()),
        "final + hand-picked runs": float(sum(p in ("final", "default") for p in phases)),
        "driver wall s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pruner", default="successive_halving", help="the pruner compared with none")
    parser.add_argument("--study", help="a study file or built-in name (default: a small digits study)")
    parser.add_argument("--tasks", default="", help="comma-separated task labels to keep (with --study)")
    parser.add_argument("--learners", default="", help="comma-separated learner labels to keep (with --study)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats to keep (with --study)")
    args = parser.parse_args()
    split = [x for x in args.tasks.split(",") if x], [x for x in args.learners.split(",") if x]
    raw = study_slice(args.study, *split, args.repeats) if args.study else tomllib.loads(SMALL)
    with tempfile.TemporaryDirectory() as tmp:
        arms = {p: measure(raw, p, Path(tmp)) for p in ("none", args.pruner)}
    name = args.study or "a small digits study (benchmarks/tuning_cost.py)"
    print(f"study: {name}, tasks {raw['tasks']}, learners {list(raw['learners'])}, tuning {raw['tuning']}")
    print(f"{'':26}" + "".join(f"{p:>20}" for p in arms) + f"{'ratio':>10}")
    for key in arms["none"]:
        none, pruned = arms["none"][key], arms[args.pruner][key]
        ratio = f"{pruned / none:.2f}" if none else "n/a"
        print(f"{key:26}" + "".join(f"{a[key]:>20.4g}" for a in arms.values()) + f"{ratio:>10}")


if __name__ == "__main__":
    main()
