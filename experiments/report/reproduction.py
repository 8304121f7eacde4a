"""A re-run held against the run it reproduces: per row, equivalent within the margin, and which
runs are bit-identical.

``compare_runs(recorded, rerun, margin)`` takes two frames of runs (run_id, learner, config, task,
and the measures; rows of ``RunTable.runs`` or a committed ``runs.csv``) and returns one row per
(learner, config, task) of the re-run: seeds of each, mean test accuracy of each, the difference,
the TOST p that the difference lies within ±margin (``stats.tost_p``, Holm-adjusted over the rows),
how many re-run runs are bit-identical to the recorded run of the same id, or of the same seed where a
release changed run ids (every measure both
record equal, NaN equal to NaN; not the clock's ``CLOCKED`` ones), and the verdict: *identical*
(every re-run run bit-identical),
*equivalent ±m*, *not shown equivalent*, or *n/a* (fewer than 2 seeds a side, or no recorded row).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, cast

import numpy as np
import pandas as pd

from bpbench.experiments.report.stats import ALPHA, holm, tost_p
from bpbench.experiments.store import records

KEYS = ["learner", "config", "task"]
CLOCKED = ("train_s", "peak_mem")  # seconds and allocator peaks vary run to run: never part of "identical"


def _same(a: pd.Series, b: pd.Series, columns: list[str]) -> bool:
    for column in columns:
        x, y = a[column], b[column]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True


def compare_runs(recorded: pd.DataFrame, rerun: pd.DataFrame, margin: float) -> pd.DataFrame:
    """One row per re-run (learner, config, task); see the module doc."""
    measures = [m for m in records.names() if m in recorded and m in rerun and m not in CLOCKED]
    by_id = recorded.set_index("run_id")
    rows = []
    for keys, group in rerun.groupby(KEYS, sort=True):
        learner, config, task = cast(tuple[str, str, str], keys)
        mine = recorded[(recorded["learner"] == learner) & (recorded["config"] == config) & (recorded["task"] == task)]
        # a run id changes when a release adds a spec field: then the recorded run of the same seed
        by_seed = mine.drop_duplicates("seed").set_index("seed") if "seed" in mine else mine.iloc[:0]
        identical = sum(
            _same(by_id.loc[run["run_id"]], run, measures)
            if run["run_id"] in by_id.index
            else run.get("seed") in by_seed.index and _same(by_seed.loc[run["seed"]], run, measures)
            for _, run in group.iterrows()
        )
        rows.append(
            {
                "learner": learner,
                "config": config,
                "task": task,
                "seeds_recorded": len(mine),
                "seeds_rerun": len(group),
                "recorded_acc": float(mine["test_acc"].mean()) if len(mine) else math.nan,
                "rerun_acc": float(group["test_acc"].mean()),
                "identical": identical,
                "tost_p_raw": tost_p(group["test_acc"], mine["test_acc"], margin) if len(mine) else math.nan,
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["diff"] = out["rerun_acc"] - out["recorded_acc"]
    out["tost_p"] = holm(out["tost_p_raw"])
    out["verdict"] = [_verdict(r, margin) for r in out.to_dict("records")]
    return out


def _verdict(row: dict[Hashable, Any], margin: float) -> str:
    if row["seeds_recorded"] == 0:
        return "n/a: no recorded runs"
    if row["identical"] == row["seeds_rerun"]:
        return "identical"
    if math.isnan(row["tost_p"]):
        return "n/a: fewer than 2 seeds a side (or no spread)"
    return f"equivalent ±{margin:g}" if row["tost_p"] < ALPHA else "not shown equivalent"


def render(frame: pd.DataFrame, margin: float) -> str:
    """The comparison as a text table and a note."""
    if frame.empty:
        return "nothing re-run"
    shown = pd.DataFrame(
        {
            "learner": frame["learner"] + frame["config"].map(lambda c: f" ({c})" if c else ""),
            "task": frame["task"],
            "seeds": [f"{a} / {b}" for a, b in zip(frame["seeds_recorded"], frame["seeds_rerun"])],
            "recorded acc": frame["recorded_acc"].map(lambda v: f"{v:.3f}"),
            "re-run acc": frame["rerun_acc"].map(lambda v: f"{v:.3f}"),
            "diff": frame["diff"].map(lambda v: f"{v:+.4f}"),
            "bit-identical": [f"{k}/{n}" for k, n in zip(frame["identical"], frame["seeds_rerun"])],
            "TOST p (Holm)": frame["tost_p"].map(lambda p: "n/a" if np.isnan(p) else f"{p:.2g}"),
            "verdict": frame["verdict"],
        }
    )
    total, same = int(frame["seeds_rerun"].sum()), int(frame["identical"].sum())
    note = (
        "Seeds: recorded / re-run. Bit-identical: re-run runs whose every measure (but seconds and peak "
        "memory) equals the recorded run of the same id (or, where a release changed run ids, of the same seed). "
        "Equivalent: TOST (statsmodels ttost_ind, Welch) "
        f"that the re-run's mean test accuracy is within ±{margin:g} of the recorded one, Holm-adjusted over "
        f"the {len(frame)} rows, alpha {ALPHA:g}. {same} of {total} re-run runs bit-identical. Expect "
        "bit-identical runs on the same CPU and torch build, and equivalent (not identical) rows on another machine."
    )
    return shown.to_markdown(index=False, tablefmt="simple") + "\n\n" + note
