"""Run wall time against the training clock, from a results folder's run metadata.

For every finished run, ``meta.json`` holds ``start_time`` and ``end_time`` (the run's wall
time, metadata included, the store's write excluded), ``summary.train_seconds`` (the
training clock) and ``phase_seconds`` (where the run's wall time went: setup, train, twins,
health, evaluation, other; older results have none). Prints, per learner label and task and
summed over all runs, run wall / training clock and the phases' shares of the wall time,
then the ratio summed over every run (target: <= 1.10 for ``quick``).

    python -m benchmarks.run_overhead [DIR]        # default bpbench-out/quick
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

PHASES = ("setup", "train", "twins", "health", "evaluation", "other")


def run_figures(meta: dict[str, Any]) -> dict[str, float]:
    """wall, clock and each phase (seconds) of one finished run; "outside" is the wall the
    runner's phases do not cover (the run's metadata: git commit, versions)."""
    start, end = datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"])
    wall = (end - start).total_seconds()
    phases = meta.get("phase_seconds") or {}
    out = {"wall": wall, "clock": float(meta["measures"]["values"]["train_seconds"]), "runs": 1.0}
    for name in PHASES:
        out[name] = float(phases.get(name, 0.0))
    out["outside"] = max(0.0, wall - sum(out[name] for name in PHASES)) if phases else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default="bpbench-out/quick")
    args = parser.parse_args()
    metas = [json.loads(p.read_text()) for p in sorted(Path(args.dir).glob("runs/*/meta.json"))]
    metas = [m for m in metas if m.get("status") == "ok"]
    if not metas:
        raise SystemExit(f"no finished run in {args.dir!r} (expected DIR/runs/*/meta.json with status ok)")
    groups: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    total: dict[str, float] = defaultdict(float)
    for meta in metas:
        figures = run_figures(meta)
        key = (meta["spec"]["label"], meta["spec"]["task_label"])
        for name, value in figures.items():
            groups[key][name] += value
            total[name] += value
    columns = [*PHASES, "outside"]
    header = f"{'learner':<15}{'task':<9}{'runs':>5}{'wall s':>9}{'clock s':>9}{'wall/clock':>11}  " + "".join(
        f"{c:>11}" for c in columns
    )
    print("share of run wall time per phase (train is the clock's regions, synchronized)")
    print(header)
    for (label, task), g in [*sorted(groups.items()), (("all runs", ""), total)]:
        shares = "".join(f"{g[c] / g['wall']:>11.1%}" for c in columns)
        print(
            f"{label:<15}{task:<9}{int(g['runs']):>5}{g['wall']:>9.2f}{g['clock']:>9.2f}"
            f"{g['wall'] / g['clock']:>11.2f}  {shares}"
        )
    print(
        f"run wall / training clock, summed over {int(total['runs'])} runs: "
        f"{total['wall'] / total['clock']:.3f} (target <= 1.10)"
    )


if __name__ == "__main__":
    main()
