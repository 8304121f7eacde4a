"""Figures of the across-task scores, from ``FigureData`` (``report/figure_data.py``) or a tidy table.

- ``target_curves``: validation accuracy against training FLOPs, one panel per task, each learner
  at its best configuration by validation accuracy, the task's target drawn as a dashed line.
- ``performance_profile_figure``: each learner's performance profile (``ranking.performance_profile``).
- ``critical_difference``: average ranks by final test accuracy with the Nemenyi post-hoc
  (scikit-posthocs' ``critical_difference_diagram``): learners joined by a bar do not differ
  significantly.

Targets: ``FigureData.targets`` (the studies' ``[targets]``) and ``FigureData.reference`` (the
label whose validation accuracy sets the other tasks' targets), as ``scoring.targets_for``; the
time-to-target curves are ``FigureData.curves``, the ones the score table reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter

from bpbench.experiments.report import ranking
from bpbench.experiments.report.figure_data import FigureData
from bpbench.experiments.report.figures import PANEL, NoData, learner_colors, learner_legend, learner_markers
from bpbench.experiments.report.scoring import first_reached, targets_for


def _runs_with_times(data: FigureData) -> tuple[pd.DataFrame, dict[str, float], pd.DataFrame]:
    """(per-run rows with time to target, task -> target, per-evaluation curves) of ``data``."""
    runs = data.runs
    if runs.empty:
        raise NoData("scores: the results have no runs")
    targets, _ = targets_for(runs, data.targets, data.reference)
    curves = data.curves
    if curves["val_acc"].isna().all():
        raise NoData("scores: the results have no validation accuracy rows")
    return runs.merge(first_reached(curves, targets), on="run_id", how="left"), targets, curves


def _colors(runs: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    return learner_colors(zip(runs["learner"], runs["learner_name"]))


def target_curves(data: FigureData) -> Figure:
    """Validation accuracy against training FLOPs with each task's target (dashed)."""
    runs, targets, curves = _runs_with_times(data)
    best = ranking.best_configs(runs)
    colors = _colors(runs)
    markers = learner_markers(zip(runs["learner"], runs["learner_name"]))
    curves = curves[curves["run_id"].isin(best["run_id"]) & (curves["flops"] > 0)]
    if curves.empty:
        raise NoData("validation accuracy vs FLOPs: the results have no train_flops rows")
    curves = curves.merge(best[["run_id", "learner", "config"]], on="run_id")
    tasks = sorted(curves["task"].unique())
    several = runs.groupby("learner")["config"].nunique()
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(PANEL[0] * len(tasks) + 1.5, PANEL[1]), layout="constrained")
        axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True).ravel()
        for ax, task in zip(axes, tasks):
            mine = curves[curves["task"] == task]
            for learner, line in mine.groupby("learner", sort=True):
                mean = line.groupby("epoch").agg(flops=("flops", "mean"), acc=("val_acc", "mean"))
                config = line["config"].iloc[0]
                label = f"{learner} ({config})" if several.get(learner, 1) > 1 and config else learner
                ax.plot(
                    mean["flops"],
                    mean["acc"],
                    color=colors[learner],
                    marker=markers[learner],
                    markersize=3,
                    linewidth=1.2,
                    label=label,
                )
            if task in targets:
                ax.axhline(targets[task], color="0.3", linestyle="--", linewidth=0.9)
                ax.annotate(
                    f"target {targets[task]:.3f}",
                    (0.02, targets[task]),
                    xycoords=("axes fraction", "data"),
                    va="bottom",
                    fontsize="x-small",
                    color="0.3",
                )
            ax.set(
                title=task, xlabel="training FLOPs (log scale)", ylabel="validation accuracy (fraction)", xscale="log"
            )
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.xaxis.set_minor_formatter(NullFormatter())
        chosen = curves.drop_duplicates(["learner", "task"]).groupby("learner")["config"].agg(set)
        texts = {  # the chosen configuration when it is the same on every task (else: the caption's rule)
            learner: f"{learner} ({next(iter(configs))})"
            if several.get(learner, 1) > 1 and len(configs) == 1 and next(iter(configs))
            else learner
            for learner, configs in chosen.items()
        }
        learner_legend(fig, colors, curves["learner"], markers=markers, texts=texts)
    return fig


def performance_profile_figure(data: FigureData, measure: str = "flops", cap: float = ranking.PROFILE_CAP) -> Figure:
    """Each learner's fraction of tasks within tau x the fastest time to target, tau in [1, cap]."""
    runs, _, _ = _runs_with_times(data)
    elapsed = ranking.times(runs, measure).dropna(how="all")
    if elapsed.empty:
        raise NoData("performance profile: no task has a target (no study target and no reference runs)")
    taus = np.linspace(1.0, cap, 301)
    profile = ranking.performance_profile(elapsed, taus)
    area = ranking.profile_area(elapsed, cap)
    colors = _colors(runs)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(PANEL[0] + 1.6, PANEL[1]), layout="constrained")
        ax = fig.subplots()
        for learner in sorted(profile.columns, key=lambda c: (-area[c], c)):
            ax.step(
                taus,
                profile[learner],
                where="post",
                color=colors[learner],
                linewidth=1.3,
                label=f"{learner} ({area[learner]:.2f})",
            )
        ax.set(
            xlabel=f"tau: time to target / fastest learner's ({measure})",
            ylabel=f"fraction of {len(elapsed)} task(s)",
            ylim=(-0.03, 1.03),
            xlim=(1.0, cap),
        )
        fig.legend(loc="outside right upper", title="learner (area)", frameon=False, fontsize="x-small")
    return fig


def critical_difference(data: FigureData) -> Figure:
    """Average ranks by final test accuracy, Nemenyi post-hoc bars (scikit-posthocs)."""
    runs = data.runs
    if runs.empty:
        raise NoData("critical difference: the results have no runs")
    matrix = ranking.complete(ranking.accuracy_matrix(runs))
    drawn_ok, why_not = ranking.draws_cd(matrix)
    if not drawn_ok:
        raise NoData(f"critical difference: {why_not}")
    import scikit_posthocs as sp

    ranks = ranking.average_ranks(matrix, higher_is_better=True)
    stat, p = ranking.friedman(matrix)
    with sns.axes_style("white"), sns.plotting_context("paper"):
        fig = Figure(figsize=(PANEL[0] * 2, 0.4 + 0.25 * len(ranks)), layout="constrained")
        ax = fig.subplots()
        drawn = sp.critical_difference_diagram(
            ranks,
            ranking.nemenyi(matrix),
            ax=ax,
            color_palette=dict(_colors(runs)),
            label_fmt_left="{label} ({rank:.1f})",  # the default .2g prints 11.5 as "12"
            label_fmt_right="({rank:.1f}) {label}",
        )
        for lines in drawn["crossbars"]:  # a bar's points come from a set: in string-hash order, which
            for line in lines:  # changes between processes; sorted, the figure is the same every time
                xs, ys = line.get_data()
                line.set_data(sorted(xs), ys)
        ax.set_title(
            f"average rank by test accuracy over {matrix.shape[0]} tasks (1 = best); Friedman "
            f"p = {p:.2g}, chi2 = {stat:.3g}",
            fontsize="small",
        )
    return fig
