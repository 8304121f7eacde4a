"""Figures of a tuned study, from its trial table (``report.tuning.trials``).

- ``evp_figure(table, task)``: expected validation performance (Dodge et al. 2019) against the
  number of trials, one line per learner, band: ± one standard deviation of the best of n.
- ``sensitivity_figure(table, option)``: each trial's validation score against a searched
  option, one panel per task, coloured by learner (a narrow good band shows as a spike).

``tuning_figures(table)``: name -> (caption, builder) for ``bpbench plot`` and the HTML report;
empty for a folder without tuning runs.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bpbench.experiments.report.figures import PANEL, Builder, NoData, learner_colors
from bpbench.experiments.report.tuning import evp_curve, trials
from bpbench.experiments.store.describe import compact_value
from bpbench.experiments.store.run_table import RunTable

VAL_LABEL = "validation accuracy (fraction)"


def _colors(table: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    return learner_colors((label, label) for label in table["learner"].unique())


def evp_figure(table: pd.DataFrame, task: str) -> Figure:
    """Expected best validation accuracy after n = 1..N trials on ``task``, one line per learner."""
    mine = table[(table["task"] == task) & table["val_score"].notna()]
    if mine.empty:
        raise NoData(f"no tuning trial with a validation score on {task}")
    fig = Figure(figsize=(PANEL[0] * 1.4, PANEL[1] * 1.2), layout="constrained")
    ax = fig.subplots()
    colors = _colors(table)
    for key, group in mine.groupby("learner", sort=True):
        learner = cast(str, key)  # pandas-stubs types group keys as any Scalar; learner labels are str
        curve = evp_curve(list(group["val_score"]))
        low = np.maximum(curve["evp"] - curve["sd"], group["val_score"].min())
        high = np.minimum(curve["evp"] + curve["sd"], group["val_score"].max())
        ax.plot(curve["n"], curve["evp"], color=colors[learner], label=learner, marker="o", markersize=3)
        ax.fill_between(curve["n"], low, high, color=colors[learner], alpha=0.15, linewidth=0)
    ax.set(xlabel="trials n", ylabel="expected best val. accuracy", title=f"expected validation performance: {task}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="x-small", frameon=False)
    return fig


def _numeric(values: pd.Series) -> bool:
    return bool(values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all())


def sensitivity_figure(table: pd.DataFrame, option: str) -> Figure:
    """Validation score of every trial against ``option``, one panel per task, coloured by learner."""
    rows = table[table["options"].map(lambda o: option in o) & table["val_score"].notna()].copy()
    if rows.empty:
        raise NoData(f"no scored tuning trial searched {option!r}")
    rows["x"] = rows["options"].map(lambda o: o[option])
    tasks = sorted(rows["task"].unique())
    fig = Figure(figsize=(PANEL[0] * len(tasks), PANEL[1] * 1.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0])
    colors = _colors(table)
    numeric = _numeric(rows["x"])
    if not numeric:
        rows["x"] = rows["x"].map(compact_value)
    log = numeric and (rows["x"] > 0).all() and rows["x"].max() / rows["x"].min() >= 10
    for ax, task in zip(axes, tasks):
        for learner, group in rows[rows["task"] == task].groupby("learner", sort=True):
            ax.scatter(group["x"], group["val_score"], color=colors[learner], label=learner, s=14)
        if log:
            ax.set_xscale("log")
        ax.set(xlabel=option, title=task)
    axes[0].set_ylabel(VAL_LABEL)
    axes[-1].legend(fontsize="x-small", frameon=False)
    return fig


def tuning_figures(runs: RunTable) -> dict[str, Builder]:
    """Name -> (caption, builder) of the tuned study's figures, from its trials only (none without)."""
    table = trials(runs)
    if table.empty:
        return {}
    figures: dict[str, Builder] = {}
    for task in sorted(table["task"].unique()):
        figures[f"evp_{task}"] = (
            (
                f"Expected validation performance on {task} (Dodge et al. 2019): the expected best validation accuracy "
                "after n trials drawn from each learner's own trials; band: ± one standard deviation."
            ),
            lambda task=task: evp_figure(table, task),
        )
    options = sorted({name for options in table["options"] for name in options})
    for option in options:
        figures[f"sensitivity_{option.replace('.', '_')}"] = (
            f"Validation accuracy of every tuning trial against {option}, by learner.",
            lambda option=option: sensitivity_figure(table, option),
        )
    return figures
