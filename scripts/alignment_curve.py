"""Alignment over training from a results folder (e.g. of the ``alignment`` study).

Prints, per learner and layer, the cosine between the update and the true gradient
(``grad_alignment``) and, where recorded, the angle between W and its feedback matrix
(``weight_feedback_angle_deg``): at the first sampled step, then averaged over each
epoch's sampled steps; every cell is the mean over seeds.

    python -m scripts.alignment_curve DIR [--task mnist5k]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

METRICS = {"grad_alignment": "cosine with the true gradient", "weight_feedback_angle_deg": "angle W-B (degrees)"}


def curves(data: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows: 'first step' then each epoch; columns: learner/layer; cells: mean over steps and seeds."""
    rows = data[data["metric"] == metric]
    if rows.empty:
        return pd.DataFrame()
    first_step = rows["step"].min()
    first = rows[rows["step"] == first_step].groupby(["learner", "layer"])["value"].mean().rename(f"step {first_step}")
    per_seed = rows.groupby(["learner", "layer", "epoch", "seed"])["value"].mean()
    by_epoch = per_seed.groupby(["learner", "layer", "epoch"]).mean().unstack("epoch")
    by_epoch.columns = [f"epoch {e}" for e in by_epoch.columns]
    table = pd.concat([first, by_epoch], axis=1).T
    table.columns = [f"{learner}/{layer}" for learner, layer in table.columns]
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="results folder (the --out of bpbench run)")
    p.add_argument("--task", help="only this task label")
    args = p.parse_args()
    data = RunTable.read(RunStore(Path(args.dir))).tidy()
    if data.empty:
        raise SystemExit(f"{args.dir}: no completed runs")
    if args.task:
        data = data[data["task"] == args.task]
    for metric, title in METRICS.items():
        table = curves(data, metric)
        if not table.empty:
            print(f"\n{metric}: {title}, mean over seeds\n")
            print(table.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
