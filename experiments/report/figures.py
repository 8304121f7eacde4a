"""Paper figures of a results folder, one function each.

Every function takes ``FigureData`` (``report/figure_data.py``: one row per run, and the metric
rows a figure draws, read when it draws them) or a tidy table in memory (``table.tidy``: one
row per measurement, with its run's learner, config, task, seed, model and budget), and returns a
``matplotlib.figure.Figure`` drawn with seaborn; nothing touches pyplot's global state. Each
learner label keeps one color and marker in every figure (``learner_colors``, from the display
catalog ``report/learner_styles.py``). Spread over seeds is the 95% t-interval of
``report.stats``. A figure that shows one configuration per learner (learning curves,
alignment) picks it by final *validation* accuracy; test accuracy is only reported. A figure
whose data the results do not hold raises ``NoData`` saying what is missing. ``save_all``
writes PDF and PNG.
"""

from __future__ import annotations

import functools
import itertools
import math
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bpbench.experiments.report import learner_styles
from bpbench.experiments.report.figure_data import FigureData
from bpbench.experiments.report.stats import bounded_interval, t_interval
from bpbench.experiments.store import records
from bpbench.experiments.store.run_store import atomic_write
from bpbench.experiments.store.run_table import RunTable
from bpbench.experiments.store.safe_paths import UnsafePathError, safe_name

# the metric rows the figures read: the per-run measures, and per-layer gradient norms and cosines
STEP_METRICS = ("grad_norm", "grad_alignment", "grad_projection")  # per layer and sampled step: most of a run's rows
FIGURE_METRICS = (*records.METRICS, *STEP_METRICS)
PANEL = (3.2, 2.6)  # inches per panel: a paper column holds one or two
ACCURACY_LABEL = "test accuracy (fraction)"
Color = tuple[float, float, float]


class NoData(ValueError):
    """The tidy table lacks what a figure needs (the message says what)."""


def _palette_colour(colour: tuple[str, int]) -> Color:
    palette, slot = colour
    return sns.color_palette(palette, learner_styles.SLOTS)[slot]


def learner_colors(labels: Iterable[tuple[str, str]]) -> dict[str, Color]:
    """Label -> color for (label, registered learner) pairs (``learner_styles.assign``): fixed for
    the built-in learners, a stable spare one, never a built-in's, for any other."""
    return {label: _palette_colour(colour) for label, (colour, _) in learner_styles.assign(labels).items()}


def _learner_order(data: pd.DataFrame) -> list[str]:
    """Learner labels of ``data``: built-in learners in the display catalog's order, then by label."""
    pairs = data[["learner", "learner_name"]].drop_duplicates()
    return [label for _, label in sorted((learner_styles.rank(n), lab) for lab, n in pairs.itertuples(index=False))]


def learner_markers(labels: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Label -> marker for (label, registered learner) pairs (``learner_styles.assign``)."""
    return {label: marker for label, (_, marker) in learner_styles.assign(labels).items()}


def _markers(data: pd.DataFrame) -> dict[str, str]:
    """Label -> marker for the learners of ``data``."""
    return learner_markers(zip(data["learner"], data["learner_name"]))


def _colors(data: pd.DataFrame) -> dict[str, Color]:
    """Label -> color for ``data``'s learners, in legend order."""
    colors = learner_colors(zip(data["learner"], data["learner_name"]))
    return {label: colors[label] for label in _learner_order(data)}


def _require(data: pd.DataFrame, metric: str, figure: str) -> pd.DataFrame:
    rows = data[data["metric"] == metric] if not data.empty else data
    if rows.empty:
        raise NoData(f"{figure}: the results have no {metric!r} rows")
    return rows


def _figure(n_panels: int, ncols: int | None = None, sharey: bool = True) -> tuple[Figure, list]:
    ncols = ncols or n_panels
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(PANEL[0] * ncols, PANEL[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _quiet_minor_ticks(ax: object) -> None:
    """No labels on log-axis minor ticks (they overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter

    for axis in (ax.xaxis, ax.yaxis):  # type: ignore[attr-defined]
        axis.set_minor_formatter(NullFormatter())


def _x_scale(ax: object, values: Iterable[float], label: str, engineering: bool = False) -> None:
    """Log x axis when ``values`` span a decade or more (label says so), else linear.

    ``engineering``: tick labels with SI prefixes (FLOPs: 10G, 300M), never an offset text.
    """
    from matplotlib.ticker import EngFormatter

    arr = np.asarray(list(values), dtype=float)
    arr = arr[arr > 0]
    log = arr.size > 0 and arr.max() / arr.min() >= 10
    ax.set_xscale("log" if log else "linear")  # type: ignore[attr-defined]
    ax.set_xlabel(f"{label} (log scale)" if log else label)  # type: ignore[attr-defined]
    _quiet_minor_ticks(ax)
    if engineering:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # type: ignore[attr-defined]


def _ci(values: pd.Series) -> tuple[float, float]:
    """Seaborn errorbar callable: the 95% t-interval of the mean (a point when n < 2)."""
    mean, low, high = t_interval(values)
    return (mean, mean) if math.isnan(low) else (low, high)


def _geometric_mean(values: pd.Series) -> float:
    """exp(mean(log v)) of the positive ``values``: the centre of a measure drawn on a log axis."""
    positive = values[values > 0]
    return float(np.exp(np.log(positive).mean())) if len(positive) else math.nan


def _ci_geometric(values: pd.Series) -> tuple[float, float]:
    """exp of the 95% t-interval of log(values) (positive values): an interval on a log axis that
    stays above 0 and is symmetric there."""
    positive = values[values > 0]
    mean, low, high = t_interval(np.log(positive.to_numpy(float)))
    return (float(np.exp(mean)),) * 2 if math.isnan(low) else (float(np.exp(low)), float(np.exp(high)))


def _ci_bounded(values: pd.Series) -> tuple[float, float]:
    """Seaborn errorbar callable for accuracies: the percentile bootstrap interval (within [0, 1])."""
    mean, low, high = bounded_interval(values)
    return (mean, mean) if math.isnan(low) else (low, high)


def _chosen_labels(rows: pd.DataFrame, data: pd.DataFrame) -> dict[str, str]:
    """Learner -> legend label naming the configuration shown, for learners with several
    ('fa' over '(lr=0.003)'; per task when the choice differs: '(digits: lr=0.003)' over '(fsdd: lr=0.01)')."""
    several = data.groupby("learner")["config"].nunique()
    labels: dict[str, str] = {}
    for key, mine in rows[["learner", "task", "config"]].drop_duplicates().groupby("learner", sort=False):
        learner = cast(str, key)  # pandas-stubs types group keys as any Scalar; learner labels are str
        if several.get(learner, 1) < 2:
            labels[learner] = learner
        elif mine["config"].nunique() == 1:
            labels[learner] = f"{learner}\n({mine['config'].iloc[0]})"
        else:
            labels[learner] = f"{learner}\n" + "\n".join(f"({t}: {c})" for t, c in zip(mine["task"], mine["config"]))
    return labels


def _best_config(runs: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The runs (rows of ``FigureData.runs``) of each learner x task's best configuration: the
    highest mean final *validation* accuracy over seeds (ties: the first in config order). Test
    accuracy never chooses; it is only reported for the configuration validation chose.

    Returns (runs, whether any learner had more than one configuration to choose from).
    Raises NoData when a choice is needed and a configuration has no validation accuracy.
    """
    means = runs.groupby(["learner", "task", "config"], as_index=False)["val_acc"].mean()
    counts = means.groupby(["learner", "task"])["config"].transform("size")
    blind = means[(counts > 1) & means["val_acc"].isna()]
    if not blind.empty:
        row = blind.iloc[0]
        raise NoData(
            f"best configuration: {row['learner']} ({row['config']}) on {row['task']} has no validation "
            "accuracy to choose by"
        )
    best = means.loc[means.fillna({"val_acc": -math.inf}).groupby(["learner", "task"])["val_acc"].idxmax()]
    keep = runs.merge(best[["learner", "task", "config"]], on=["learner", "task", "config"])
    return keep, len(means) > len(best)


LEGEND_ROWS = 16  # a longer legend wraps into columns
LEGEND_COLUMN_INCHES = 2.2  # the canvas widens by this per legend column


def learner_legend(
    fig: Figure,
    colors: dict[str, Color],
    labels: Iterable[str],
    title: str = "learner",
    markers: dict[str, str] | None = None,
    texts: dict[str, str] | None = None,
) -> None:
    """One legend of the learners ``labels`` (in ``colors``' order) beside the panels, outside them:
    the canvas grows to fit it (columns of at most ``LEGEND_ROWS``); ``texts``: a label's shown text."""

    shown = [label for label in colors if label in set(labels)]
    handles = [
        Line2D(
            [], [], color=colors[label], marker=(markers or {}).get(label, "o"), label=(texts or {}).get(label, label)
        )
        for label in shown
    ]
    rows = min(len(handles), LEGEND_ROWS)
    ncols = max(1, math.ceil(len(handles) / LEGEND_ROWS))
    width, height = fig.get_size_inches()  # room for a long legend beside the panels, never over them
    fig.set_size_inches(width + LEGEND_COLUMN_INCHES * ncols, max(height, 0.9 + 0.26 * rows))
    small = "x-small" if len(handles) > LEGEND_ROWS else None
    legend = fig.legend(
        handles=handles, loc="outside right upper", title=title, frameon=False, ncols=ncols, fontsize=small
    )
    needed = legend.get_window_extent().height / fig.dpi + 0.3  # multi-line labels
    if needed > fig.get_size_inches()[1]:
        fig.set_size_inches(fig.get_size_inches()[0], needed)


# x -> (metric giving x, axis label, whether to drop x = 0 and go log when x spans a decade)
X_AXES = {
    "epoch": ("epoch", "epochs", False),
    "seconds": ("train_seconds", "training time (s)", True),
    "flops": ("train_flops", "training FLOPs", True),
}


def learning_curves(data: FigureData, x: str = "epoch") -> Figure:
    """Test accuracy against epochs, training seconds or training FLOPs; one panel per task.

    Each learner at its best configuration by validation accuracy (``_best_config``).
    Lines: mean over seeds at each evaluation (x at the seeds' mean), bands: 95% t-interval.
    """
    if x not in X_AXES:
        raise ValueError(f"x = {x!r}: allowed: {', '.join(X_AXES)}")
    metric, xlabel, log = X_AXES[x]
    if data.runs.empty:
        raise NoData("learning curves: the results have no runs")
    colors, markers = _colors(data.runs), _markers(data.runs)
    chosen, picked = _best_config(data.runs)
    shown = chosen[["run_id"]].drop_duplicates()
    acc = _require(data.rows(("accuracy",), shown["run_id"]), "accuracy", "learning curves")
    acc = acc[acc["split"] == "test"]
    acc = acc.merge(shown, on="run_id")
    if x != "epoch":
        xs = _require(data.rows((metric,), shown["run_id"]), metric, "learning curves")
        acc = acc.merge(xs[["run_id", "epoch", "value"]].rename(columns={"value": metric}), on=["run_id", "epoch"])
    if log:
        acc = acc[acc[metric] > 0]
    curves = acc.groupby(["learner", "task", "epoch"]).agg(x=(metric, "mean"), values=("value", list)).reset_index()
    tasks = sorted(curves["task"].unique())
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(tasks))
        for ax, task in zip(axes, tasks):
            for learner, line in curves[curves["task"] == task].groupby("learner", sort=False):
                stats = np.array([bounded_interval(v) for v in line["values"]])
                ax.plot(
                    line["x"], stats[:, 0], color=colors[learner], marker=markers[learner], markersize=3, linewidth=1.2
                )
                ax.fill_between(line["x"], stats[:, 1], stats[:, 2], color=colors[learner], alpha=0.2, linewidth=0)
            ax.set(title=task, ylabel=ACCURACY_LABEL)
            if log:
                _x_scale(ax, curves.loc[curves["task"] == task, "x"], xlabel, engineering=metric == "train_flops")
            else:
                ax.set_xlabel(xlabel)
        learner_legend(
            fig,
            colors,
            curves["learner"],
            "learner\n(best val. config)" if picked else "learner",
            markers,
            _chosen_labels(chosen, data.runs),
        )
    return fig


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``points`` (one per configuration: flops, val, ...) on the validation Pareto front:
    no cheaper configuration has a higher mean validation accuracy (ties in FLOPs: the higher val
    first). Test accuracy plays no part; the figure draws the chosen rows at their test accuracy.
    Raises NoData when a configuration has no validation accuracy to choose by."""
    blind = points[points["val"].isna()]
    if not blind.empty:
        row = blind.iloc[0]
        raise NoData(
            f"Pareto front: {row['learner']} ({row['config']}) on {row['task']} has no validation accuracy to choose by"
        )
    ordered = points.sort_values(["flops", "val"], ascending=[True, False], kind="stable")
    return ordered[ordered["val"] > ordered["val"].cummax().shift(fill_value=-math.inf)]


def accuracy_vs_compute(data: FigureData) -> Figure:
    """Final test accuracy against training FLOPs per learner configuration, one panel per task.

    Points: means over seeds with 95% t-intervals; the gray step line is the Pareto front chosen
    on *validation* accuracy (``pareto_front``), drawn through the chosen configurations' test accuracy.
    """
    runs = data.runs
    if runs.empty or runs["flops"].isna().all():
        raise NoData("accuracy vs compute: the results have no 'train_flops' rows")
    colors, markers = _colors(runs), _markers(runs)
    points = _config_points(runs)
    tasks = sorted(points["task"].unique())
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(tasks))
        for ax, task in zip(axes, tasks):
            mine = points[points["task"] == task].sort_values("flops")
            _draw_compute_panel(ax, mine, colors, markers)
            ax.set(title=task, ylabel=ACCURACY_LABEL)
            _x_scale(ax, mine["flops"], "training FLOPs", engineering=True)
        learner_legend(fig, colors, points["learner"], markers=markers)
    return fig


def _config_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (learner, config, task) of ``runs``: mean FLOPs, mean validation accuracy, and
    ``acc``, the (mean, low, high) 95% t-interval of test accuracy over seeds."""
    groups = runs.groupby(["learner", "config", "task"], sort=False)
    return pd.DataFrame(
        [
            {
                "learner": k[0],
                "config": k[1],
                "task": k[2],
                "flops": g["flops"].mean(),
                "val": g["val_acc"].mean(),
                "acc": bounded_interval(g["test_acc"]),
            }
            for k, g in groups
        ]
    )


def _draw_compute_panel(ax: Axes, mine: pd.DataFrame, colors: dict[str, Color], markers: dict[str, str]) -> None:
    """One task's configuration points (``_config_points`` rows) with error bars, their labels
    and the gray Pareto front, on ``ax``."""
    rows: Iterable[Any] = mine.itertuples()  # acc holds (mean, low, high); the stubs say Scalar
    for row in rows:
        mean, low, high = row.acc
        err = None if math.isnan(low) else [[mean - low], [high - mean]]
        ax.errorbar(
            row.flops,
            mean,
            yerr=err,
            color=colors[row.learner],
            marker=markers[row.learner],
            markersize=5,
            capsize=2,
        )
    _label_configs(ax, mine)
    front = pareto_front(mine.dropna(subset=["flops"]))
    if not front.empty:
        ax.step(
            front["flops"],
            [acc[0] for acc in front["acc"]],
            where="post",
            color="0.5",
            linewidth=0.8,
            zorder=0,
            label="_front",
        )


LABELLED_CONFIGS = 4  # a learner with 2 to this many configurations in a panel gets each point labelled


def _label_configs(ax: Axes, points: pd.DataFrame) -> None:
    """Name each configuration of a learner with several in the panel next to its point, so
    they are told apart by label, not only by position."""
    for _, mine in points.groupby("learner", sort=False):
        if 2 <= len(mine) <= LABELLED_CONFIGS:
            for row, text in zip(mine.itertuples(), _distinguishing(list(mine["config"]))):
                ax.annotate(
                    text,
                    (row.flops, row.acc[0]),  # type: ignore[index]  # acc holds (mean, low, high); stubs say Scalar
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize="xx-small",
                    color="0.25",
                )


def grad_norm_heatmap(
    data: FigureData,
    learner: str,
    task: str | None = None,
    configs: list[str] | None = None,
    run_id: str | None = None,
) -> Figure:
    """Per-layer update-signal norm over training (log10, mean over seeds), one panel per config.

    ``run_id`` picks one run instead; otherwise all seeds of ``learner`` on ``task`` (default:
    its first task with gradient norms) for each of ``configs`` (default: every configuration, at
    most 6). Reads the gradient-norm rows of those runs only.
    """
    learner, task, configs, norms = _heatmap_rows(data, learner, task, configs, run_id)
    scale = {"vmin": norms["log_norm"].min(), "vmax": norms["log_norm"].max()}  # one scale: panels compare
    titles = _distinguishing(configs)
    with sns.axes_style("white"), sns.plotting_context("paper"):
        fig, axes = _figure(len(configs), ncols=min(3, len(configs)), sharey=False)
        for ax, config, title in zip(axes, configs, titles):
            rows = norms[norms["config"] == config]
            _draw_heatmap_panel(ax, rows, scale)
            untrained = sorted(set(rows.loc[rows["untrained"], "layer"]))
            left_out = f"\nnot trained (norm 0), left out: {', '.join(untrained)}" if untrained else ""
            ax.set(
                title=f"{learner} on {task}" + (f"\n{title}" if title else "") + left_out,
                xlabel="training step",
                ylabel="layer (input to output)",
            )
    return fig


def _heatmap_rows(
    data: FigureData, learner: str, task: str | None, configs: list[str] | None, run_id: str | None
) -> tuple[str, str | None, list[str], pd.DataFrame]:
    """The heatmap's choice (``grad_norm_heatmap``'s arguments) -> (learner, task, configs, their
    grad_norm rows with ``masked_log_norms`` columns); NoData when there is nothing finite to draw."""
    runs = data.runs
    if run_id is not None:
        runs = runs[runs["run_id"] == run_id] if not runs.empty else runs
        if runs.empty:
            raise NoData(f"gradient-norm heatmap: run {run_id!r} has no grad_norm rows")
        learner, task, configs = runs["learner"].iloc[0], runs["task"].iloc[0], [runs["config"].iloc[0]]
    mine = runs[runs["learner"] == learner] if not runs.empty else runs
    if configs:
        mine = mine[mine["config"].isin(configs)]
    norms = pd.DataFrame()
    for candidate in [task] if task else sorted(mine["task"].unique()) if not mine.empty else []:
        norms = data.rows(("grad_norm",), mine.loc[mine["task"] == candidate, "run_id"])
        if not norms.empty:
            task = candidate
            break
    if norms.empty:
        raise NoData(
            f"gradient-norm heatmap: learner {learner!r} has no grad_norm rows" + (f" on {task}" if task else "")
        )
    present = set(norms["config"])  # configurations of other tasks (a tuned study's choices) have no rows here
    configs = [c for c in configs if c in present] if configs else sorted(present)[:6]
    norms = masked_log_norms(norms[norms["config"].isin(configs)])
    if norms["log_norm"].isna().all():
        raise NoData(f"gradient-norm heatmap: {learner} on {task} has no finite, nonzero update-signal norm")
    return learner, task, configs, norms


def _draw_heatmap_panel(ax: Axes, rows: pd.DataFrame, scale: dict[str, float]) -> None:
    """One configuration's masked log norms (layers in forward order, untrained ones left out) on ``ax``."""
    rows = rows[~rows["untrained"]]
    layers = list(dict.fromkeys(rows["layer"]))  # recorded in forward order
    grid = rows.pivot_table(index="layer", columns="step", values="log_norm", aggfunc="mean", dropna=False).reindex(
        layers
    )
    sns.heatmap(
        grid,
        ax=ax,
        cmap="viridis",
        cbar_kws={"label": "log10 update-signal norm"},
        xticklabels=max(1, grid.shape[1] // 6),
        mask=grid.isna(),
        **scale,
    )


def masked_log_norms(norms: pd.DataFrame) -> pd.DataFrame:
    """``norms`` (grad_norm rows) with ``log_norm``: log10 of the norm, NaN (masked, drawn blank) where
    the norm is 0 or not finite, so one such cell cannot collapse the colour scale; and ``untrained``:
    True for every row of a layer whose norm is 0 at every recorded step of its configuration (a layer
    the rule does not train, e.g. an unused readout), which the heatmap leaves out."""
    values = norms["value"].to_numpy(dtype=float)
    valid = np.isfinite(values) & (values > 0)
    log = np.full(values.shape, np.nan)
    log[valid] = np.log10(values[valid])
    zero = pd.Series(values == 0, index=norms.index)
    untrained = zero.groupby([norms["config"], norms["layer"]]).transform("all")
    return norms.assign(log_norm=log, untrained=untrained.to_numpy())


def _distinguishing(configs: list[str]) -> list[str]:
    """Each config label without the ``key=value`` parts that all of ``configs`` share."""
    parts = [c.split(", ") if c else [] for c in configs]
    common = set.intersection(*(set(p) for p in parts)) if len(parts) > 1 else set()
    return [", ".join(x for x in p if x not in common) for p in parts]


LEGEND_LAYERS = 6  # more layers than this: a colour bar instead of a legend naming each
# the per-layer comparisons with the true gradient the alignment figure shows: metric -> (y label, y limits, guides)
COMPARISON_PANELS = {
    "grad_alignment": ("cosine with true gradient", (-1.05, 1.05), (0.0,)),
    "grad_projection": ("projection <u,g>/|g|^2", None, (0.0, 1.0)),
}


def alignment_over_training(data: FigureData, task: str | None = None) -> Figure:
    """Cosine (direction) and projection coefficient (scale; 1 = the exact gradient) of each learner's
    update signal on the true gradient over training, per layer.

    Two panels per learner (its best configuration by validation accuracy) on ``task`` (default:
    the first task), side by side: cosine, then projection (left out when the results have none,
    e.g. folders written before it was recorded); lines: mean over seeds per layer, bands: 95% t-interval.
    """
    if data.runs.empty:
        raise NoData("alignment over training: the results have no runs")
    task = task or sorted(data.runs["task"].unique())[0]
    on_task = data.runs[data.runs["task"] == task]
    chosen, _ = _best_config(on_task)
    keep = chosen[["run_id"]].drop_duplicates()
    shown = {metric: data.rows((metric,), keep["run_id"]).merge(keep, on="run_id") for metric in COMPARISON_PANELS}
    shown = {metric: frame for metric, frame in shown.items() if not frame.empty}
    if "grad_alignment" not in shown:
        raise NoData(f"alignment over training: the best configurations on {task} have no 'grad_alignment' rows")
    learners = _learner_order(shown["grad_alignment"])
    titles = _chosen_labels(chosen[chosen["learner"].isin(learners)], on_task)
    per_learner = len(shown)
    per_row = min(3 if per_learner == 1 else 2, len(learners))  # learners per row of panels
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(learners) * per_learner, ncols=per_learner * per_row, sharey=False)
        for i, learner in enumerate(learners):
            for j, (metric, frame) in enumerate(shown.items()):
                title = _wrapped(f"{titles.get(learner, learner)} on {task}")
                _draw_comparison_panel(axes[i * per_learner + j], frame[frame["learner"] == learner], metric, title)
    return fig


def _draw_comparison_panel(ax: Axes, mine: pd.DataFrame, metric: str, title: str) -> None:
    """One learner's ``metric`` rows (a ``COMPARISON_PANELS`` key) per layer over training on ``ax``;
    ``n/a`` when it has none."""
    ylabel, ylim, guides = COMPARISON_PANELS[metric]
    if mine.empty:
        ax.set(ylabel=ylabel)
        ax.set_title(title, fontsize="small")
        ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center")
        return
    sns.lineplot(
        mine,
        x="step",
        y="value",
        hue="layer",
        palette=sns.color_palette("viridis", mine["layer"].nunique()),
        errorbar=_ci,
        ax=ax,
        linewidth=1,
    )
    for y in guides:
        ax.axhline(y, color="0.5", linewidth=0.6)
    ax.set(xlabel="training step", ylabel=ylabel)
    ax.set_title(title, fontsize="small")
    if ylim is not None:
        ax.set_ylim(*ylim)
    layers = mine["layer"].nunique()
    if layers <= LEGEND_LAYERS:
        ax.legend(title="layer", fontsize="x-small", title_fontsize="x-small")
        return
    if (legend := ax.get_legend()) is not None:
        legend.remove()  # a deep net's layers: a colour bar from the first to the last, not a long list
    bar = ax.figure.colorbar(
        ScalarMappable(Normalize(1, layers), "viridis"), ax=ax, ticks=[1, layers], fraction=0.05, pad=0.02
    )
    bar.set_label("layer (first to last)", fontsize="x-small")
    bar.ax.tick_params(labelsize="x-small")


def _wrapped(title: str, width: int = 34) -> str:
    """A panel title in lines of at most ``width`` characters (panels sit side by side)."""
    return "\n".join(textwrap.wrap(title, width)) or title


PARAM_LABELS = {"lr": "learning rate", "sigma": "noise std sigma"}
LINESTYLES = ("-", "--", ":", "-.")


def _without(config: str, param: str) -> str:
    """A configuration label without its ``param=...`` part: what else the configuration varies."""
    return ", ".join(part for part in config.split(", ") if part and not part.startswith(f"{param}="))


def lr_sensitivity(data: FigureData, param: str = "lr") -> Figure:
    """Final validation accuracy (what tuning selects on; never test) against ``param`` (lr, or sigma
    for ES) for each learner that varies it.

    One panel per task; points: mean over seeds, bars: 95% t-interval; configurations that differ in
    another option are separate lines (dash patterns in order of that option's label), never joined.
    """
    if param not in PARAM_LABELS:
        raise ValueError(f"param = {param!r}: allowed: {', '.join(PARAM_LABELS)}")
    runs = data.runs
    if runs.empty:
        raise NoData("sensitivity: the results have no runs")
    colors, markers = _colors(runs), _markers(runs)
    varied = runs.groupby("learner")[param].nunique()
    runs = runs[runs["learner"].isin(varied[varied > 1].index)]
    if runs.empty:
        raise NoData(f"sensitivity: no learner has a grid over {param!r}")
    tasks = sorted(runs["task"].unique())
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(tasks))
        for ax, task in zip(axes, tasks):
            on_task = runs[runs["task"] == task]
            others = on_task["config"].map(lambda c, p=param: _without(c, p))
            for k, rest in enumerate(sorted(others.unique())):  # trials differing in another option: own line
                sns.lineplot(
                    on_task[others == rest],
                    x=param,
                    y="val_acc",
                    hue="learner",
                    palette=colors,
                    hue_order=[lab for lab in colors if lab in set(runs["learner"])],
                    errorbar=_ci_bounded,
                    err_style="bars",
                    style="learner",
                    markers=markers,
                    dashes=False,
                    linestyle=LINESTYLES[k % len(LINESTYLES)],
                    ax=ax,
                    legend=False,
                )
            ax.set(title=task, ylabel="final validation accuracy")
            _x_scale(ax, runs.loc[runs["task"] == task, param], PARAM_LABELS[param])
        learner_legend(fig, colors, runs["learner"], markers=markers)
    return fig


DEPTH_MEASURES = {
    "grad_ratio": ("grad norm first/last layer (log)", True),
    "test_acc": (ACCURACY_LABEL, False),
    "alignment": ("mean cosine with true gradient", False),
}


def _depth_label(runs: pd.DataFrame) -> str:
    """The depth axis' label: what ``describe.depth`` counts for the runs' architectures."""
    resnet = runs["arch"].eq("resnet")
    if resnet.all():
        return "weight layers (ResNet depth)"
    return "hidden layers" if not resnet.any() else "depth (MLP: hidden layers; ResNet: weight layers)"


def _depth_panel_title(task: str, arch_runs: pd.DataFrame, bn: bool) -> str:
    """A depth panel's title: the task and batch norm (a ResNet has it in every block: not named)."""
    if arch_runs["arch"].eq("resnet").all():
        return task  # the x label names the ResNet
    return f"{task}, batch norm {'on' if bn else 'off'}"


def against_depth(data: FigureData, measure: str = "grad_ratio") -> Figure:
    """A per-run measure against the number of hidden layers: hue learner, line style activation,
    one panel per (task, batch norm off/on); points: mean over seeds, bars: 95% t-interval (on a log
    axis: geometric mean and the exp of the log values' t-interval)."""
    if measure not in DEPTH_MEASURES:
        raise ValueError(f"measure = {measure!r}: allowed: {', '.join(DEPTH_MEASURES)}")
    ylabel, log = DEPTH_MEASURES[measure]
    runs = data.runs[data.runs[measure].notna()] if not data.runs.empty else data.runs
    if runs.empty or runs.groupby("learner")["depth"].nunique().max() < 2:
        raise NoData(f"against depth: no learner has {measure!r} values at more than one depth")
    colors = _colors(runs)
    depths = runs.groupby("learner")["depth"].nunique()
    runs = runs[runs["learner"].isin(depths[depths > 1].index)]
    panels = list(runs.groupby(["task", "batchnorm"]).groups)
    several = runs["activation"].nunique() > 1  # one activation: no line-style legend for it
    styles = {
        "hue_order": [lab for lab in colors if lab in set(runs["learner"])],
        "style": "activation" if several else None,
        "style_order": sorted(runs["activation"].unique()) if several else None,
    }  # the same marks in every panel
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(panels), ncols=min(2, len(panels)))
        for i, (ax, (task, bn)) in enumerate(zip(axes, panels)):
            mine = runs[(runs["task"] == task) & (runs["batchnorm"] == bn)]
            sns.lineplot(
                mine,
                x="depth",
                y=measure,
                hue="learner",
                palette=colors,
                estimator=_geometric_mean if log else "mean",
                errorbar=_ci_geometric if log else _ci,
                err_style="bars",
                markers=True if several else None,
                marker=None if several else "o",
                ax=ax,
                legend=i == 0,
                **styles,
            )
            ax.set(
                title=_depth_panel_title(task, mine, bn),
                xlabel=_depth_label(runs),
                ylabel=ylabel,
                yscale="log" if log else "linear",
            )
            ax.set_xticks(sorted(mine["depth"].unique()))  # the depths run, not 10.0 / 12.5
            _quiet_minor_ticks(ax)
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        fig.legend(handles, labels, loc="outside right upper", frameon=False)
    return fig


def alignment_by_layer(data: FigureData) -> Figure:
    """Per-layer cosine with the true gradient against the layer's relative position (0: the first
    weight layer, 1: the last), one panel per learner with runs at several depths, one line per
    depth; points: mean over a run's sampled steps, then over seeds (bars: 95% t-interval)."""
    runs = data.runs[data.runs["alignment"].notna()] if not data.runs.empty else data.runs
    depths = runs.groupby("learner")["depth"].nunique() if not runs.empty else pd.Series(dtype=int)
    runs = runs[runs["learner"].isin(depths[depths > 1].index)]
    if runs.empty:
        raise NoData("alignment by layer: no learner has alignment values at more than one depth")
    rows = data.rows(("grad_alignment",), runs["run_id"])
    if rows.empty:
        raise NoData("alignment by layer: the runs have no per-layer 'grad_alignment' rows")
    per_layer = rows.groupby(["run_id", "layer"], sort=False)["value"].mean().reset_index()
    order = per_layer.groupby("run_id", sort=False).cumcount()  # forward order, as recorded
    size = per_layer.groupby("run_id", sort=False)["layer"].transform("size")
    per_layer["position"] = order / (size - 1).clip(lower=1)
    per_layer = per_layer.merge(runs[["run_id", "learner", "depth", "task"]], on="run_id")
    learners = [lab for lab in _learner_order(runs) if lab in set(per_layer["learner"])]
    depth_values = sorted(per_layer["depth"].unique())
    palette = dict(zip(depth_values, sns.color_palette("viridis", len(depth_values))))
    tasks = sorted(per_layer["task"].unique())
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(learners) * len(tasks), ncols=min(3, len(learners) * len(tasks)))
        for i, (task, learner) in enumerate(itertools.product(tasks, learners)):
            mine = per_layer[(per_layer["learner"] == learner) & (per_layer["task"] == task)]
            sns.lineplot(
                mine,
                x="position",
                y="value",
                hue="depth",
                hue_order=depth_values,
                palette=palette,
                errorbar=_ci,
                err_style="bars",
                marker="o",
                markersize=3,
                linewidth=1,
                ax=axes[i],
                legend=False,
            )
            ax = axes[i]
            ax.axhline(0.0, color="0.5", linewidth=0.6)
            title = f"{learner} on {task}" if len(tasks) > 1 else learner
            ax.set(title=title, xlabel="layer (0: first, 1: last)", ylabel="cosine with true gradient")
        handles = [Line2D([], [], color=palette[d], marker="o", label=str(d)) for d in depth_values]
        fig.legend(handles=handles, title=_depth_label(runs), loc="outside right upper", frameon=False)
    return fig


def generalization_gap(data: FigureData) -> Figure:
    """Train-minus-test accuracy at the end of training against dropout, per learner and task."""
    runs = data.runs
    if runs.empty or runs.groupby("learner")["dropout"].nunique().max() < 2:
        raise NoData("generalization gap: no learner has runs at more than one dropout value")
    colors, markers = _colors(runs), _markers(runs)
    tasks = sorted(runs["task"].unique())
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, axes = _figure(len(tasks))
        for ax, task in zip(axes, tasks):
            sns.barplot(
                runs[runs["task"] == task],
                x="dropout",
                y="gap",
                hue="learner",
                palette=colors,
                hue_order=[lab for lab in colors if lab in set(runs["learner"])],
                errorbar=_ci,
                ax=ax,
                legend=False,
            )
            ax.set(title=task, xlabel="dropout probability", ylabel="train - test accuracy (fraction)")
        learner_legend(fig, colors, runs["learner"], markers=markers)
    return fig


Builder = tuple[str, Callable[[], Figure]]  # (caption, function drawing the figure)
BEST = (
    " A learner with several configurations is shown at the one with the highest mean final validation "
    "accuracy; test accuracy plays no part in the choice."
)


def standard_figures(data: FigureData) -> dict[str, Builder]:
    """Name -> (caption, builder) of every figure ``bpbench plot`` tries for a results folder's
    figure data or a tidy table (none when no run completed)."""
    if data.runs.empty:
        return {}
    return _run_figures(data) | _score_figures(data) | _alignment_figures(data) | _grad_norm_figures(data)


def _run_figures(data: FigureData) -> dict[str, Builder]:
    """Learning curves, accuracy against compute, sensitivity, depth and generalization figures."""
    return {
        "curves_epochs": (f"Test accuracy against training epochs.{BEST}", lambda: learning_curves(data, "epoch")),
        "curves_seconds": (
            f"Test accuracy against training wall time.{BEST}",
            lambda: learning_curves(data, "seconds"),
        ),
        "curves_flops": (f"Test accuracy against training FLOPs.{BEST}", lambda: learning_curves(data, "flops")),
        "accuracy_vs_flops": (
            "Final test accuracy against training FLOPs; gray: the Pareto front chosen on "
            "validation accuracy (no cheaper configuration has a higher mean validation "
            "accuracy), drawn at the chosen configurations' test accuracy.",
            lambda: accuracy_vs_compute(data),
        ),
        "lr_sensitivity": (
            "Final validation accuracy against the learning rate (dash patterns: configurations differing in "
            "another option).",
            lambda: lr_sensitivity(data, "lr"),
        ),
        "sigma_sensitivity": (
            "Final validation accuracy against the ES noise sigma.",
            lambda: lr_sensitivity(data, "sigma"),
        ),
        "grad_ratio_vs_depth": (
            "First/last-layer gradient-norm ratio against depth.",
            lambda: against_depth(data, "grad_ratio"),
        ),
        "accuracy_vs_depth": ("Final test accuracy against depth.", lambda: against_depth(data, "test_acc")),
        "alignment_vs_depth": (
            "Mean cosine of the update signal with the true gradient (layers exact by construction left "
            "out) against depth.",
            lambda: against_depth(data, "alignment"),
        ),
        "alignment_by_layer": (
            "Cosine of the update signal with the true gradient per weight layer (input side left), mean "
            "over sampled steps and seeds, one line per depth.",
            lambda: alignment_by_layer(data),
        ),
        "generalization_gap": ("Train-test accuracy gap with and without dropout.", lambda: generalization_gap(data)),
    }


def _score_figures(data: FigureData) -> dict[str, Builder]:
    """Time-to-target curves, performance profiles and the critical-difference diagram."""
    from bpbench.experiments.report import score_figures  # it draws with this module's colors

    return {
        "val_vs_flops_target": (
            f"Validation accuracy against training FLOPs; dashed: each task's target (time to target).{BEST}",
            lambda: score_figures.target_curves(data),
        ),
        "performance_profile": (
            "Performance profiles (Dolan & More 2002): the fraction of tasks on which a "
            "learner's median FLOPs to target is within tau x the fastest learner's; legend: "
            f"area over tau in [1, 4], divided by 3.{BEST}",
            lambda: score_figures.performance_profile_figure(data),
        ),
        "critical_difference": (
            "Average rank by final test accuracy over tasks with the Nemenyi post-hoc test "
            f"after Friedman's: learners joined by a bar do not differ significantly.{BEST}",
            lambda: score_figures.critical_difference(data),
        ),
    }


def _alignment_figures(data: FigureData) -> dict[str, Builder]:
    """One alignment-over-training figure per task."""
    figures: dict[str, Builder] = {}
    for task in sorted(data.runs["task"].unique()):
        figures[f"alignment_{task}"] = (
            f"Cosine (direction) and projection coefficient <u,g>/|g|^2 (scale: 1 = the "
            f"true gradient) of the update signal per layer over training on {task}.{BEST}",
            functools.partial(alignment_over_training, data, task),
        )
    return figures


def _grad_norm_figures(data: FigureData) -> dict[str, Builder]:
    """One gradient-norm heatmap per learner, of its deepest configurations."""
    figures: dict[str, Builder] = {}
    for learner in _learner_order(data.runs):
        configs = _heatmap_configs(data.runs, learner)
        figures[f"grad_norms_{learner}"] = (
            f"Per-layer update-signal norm of {learner} over training (its deepest configurations); a layer "
            "whose update signal is 0 at every step (not trained) is left out and named, a cell whose norm is "
            "0 or not finite is left blank (masked), so it cannot flatten the colour scale.",
            functools.partial(grad_norm_heatmap, data, learner, configs=configs),
        )
    return figures


def _heatmap_configs(runs: pd.DataFrame, learner: str) -> list[str]:
    """The configurations ``standard_figures`` draws a learner's gradient-norm heatmap for: its
    deepest ones, the first six in label order."""
    mine = runs[runs["learner"] == learner]
    return sorted(mine.loc[mine["depth"] == mine["depth"].max(), "config"].unique())[:6]


def figure_data(table: RunTable) -> FigureData:
    """The figure data of a run table (``FigureData.from_table``: its verdict runs): one record per
    run now, the metric rows each figure draws when it draws it."""
    return FigureData.from_table(table)


def save_all(
    data: FigureData, out: Path, dpi: int = 200, extra: dict[str, Builder] | None = None
) -> tuple[list[Path], dict[str, str]]:
    """Write every standard figure the data supports (and the ``extra`` ones, e.g. a tuned study's)
    as NAME.pdf and NAME.png under ``out``.

    Returns (written files, figure name -> why it was skipped).
    """
    if out.is_symlink():
        raise UnsafePathError(f"refusing to write figures into {out}: it is a symbolic link; remove it or pass --out")
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], {}
    for name, (_, build) in {**standard_figures(data), **(extra or {})}.items():
        try:
            fig = build()
        except NoData as exc:
            skipped[name] = str(exc)
            continue
        for suffix in ("pdf", "png"):  # a label is never a path: sanitized, written beside, renamed in
            path = out / f"{safe_name(name)}.{suffix}"
            atomic_write(path, lambda p, fig=fig, suffix=suffix: fig.savefig(p, dpi=dpi, format=suffix))
            written.append(path)
    return written, skipped
