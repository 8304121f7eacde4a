"""Figures from a tiny real study (backprop on digits): written as non-empty PDF and PNG,
one fixed color per learner, heatmap layers in forward order, missing data skipped with a reason."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Collection
from pathlib import Path

import pandas as pd
import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.report.figure_data import FigureData
from bpbench.experiments.report.figures import (
    NoData,
    against_depth,
    alignment_by_layer,
    alignment_over_training,
    grad_norm_heatmap,
    learner_colors,
    learning_curves,
    lr_sensitivity,
    pareto_front,
    standard_figures,
)
from bpbench.experiments.store.describe import depth
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from conftest import run_tiny_study

STUDY = """
description = "tiny plot study: an lr grid and two depths for backprop, one sgd label"
seeds = 2
tasks = ["digits"]
[model]
hidden = [[16], [16, 16]]
[budget]
epochs = 2
[schedule]
health_every = 5
[learners.backprop]
lr = [0.003, 0.03]
[learners.bp_sgd]
learner = "backprop"
optimizer = "sgd"
lr = 0.05
"""
EXPECTED = (
    "curves_epochs",
    "curves_seconds",
    "curves_flops",
    "accuracy_vs_flops",
    "lr_sensitivity",
    "grad_ratio_vs_depth",
    "accuracy_vs_depth",
    "alignment_digits",
    "grad_norms_backprop",
    "grad_norms_bp_sgd",
    "val_vs_flops_target",
    "performance_profile",
)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises if the file is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny_study(tmp_path_factory.mktemp("plots"), STUDY)


@pytest.fixture(scope="module")
def data(results: Path) -> pd.DataFrame:
    return RunTable.read(RunStore(results)).tidy()


def test_plot_command_writes_every_supported_figure(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figs = tmp_path / "figs"
    assert main(["plot", str(results), "--out", str(figs)]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        pdf, png = figs / f"{name}.pdf", figs / f"{name}.png"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000, name
        width, height = png_size(png)
        assert width > 300 and height > 300 and png.stat().st_size > 10000, name
    assert "skipped sigma_sensitivity: sensitivity: no learner has a grid over 'sigma'" in out
    assert not (figs / "sigma_sensitivity.png").exists()


def test_each_learner_keeps_its_color(data: pd.DataFrame) -> None:
    colors = learner_colors(zip(data["learner"], data["learner_name"]))
    alone = learner_colors([("backprop", "backprop")])
    with_others = learner_colors([("backprop", "backprop"), ("dfa", "dfa"), ("zeta", "backprop")])
    assert alone["backprop"] == with_others["backprop"] == colors["backprop"]
    assert len(set(with_others.values())) == 3  # distinct labels, distinct colors
    fig = learning_curves(FigureData.from_tidy(data), "epoch")
    drawn = {tuple(line.get_color()) for line in fig.axes[0].lines}
    assert tuple(colors["backprop"]) in drawn and tuple(colors["bp_sgd"]) in drawn
    lr_fig = lr_sensitivity(FigureData.from_tidy(data), "lr")
    assert fig.axes[0].get_ylabel() == "test accuracy (fraction)"
    assert lr_fig.axes[0].get_ylabel() == "final validation accuracy"  # what tuning selects on, never test
    assert lr_fig.axes[0].get_xscale() == "log"


def test_heatmap_of_one_run_has_layers_in_forward_order(data: pd.DataFrame) -> None:
    deep = data[(data["depth"] == 2) & (data["learner"] == "backprop")]
    fig = grad_norm_heatmap(FigureData.from_tidy(data), "backprop", run_id=deep["run_id"].iloc[0])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["fc1", "fc2", "out"]
    with pytest.raises(NoData, match="learner 'nobody'"):
        grad_norm_heatmap(FigureData.from_tidy(data), "nobody")


def _constructed_tidy() -> pd.DataFrame:
    """backprop at two learning rates, 2 seeds, 2 epochs: lr=0.1 is best on validation (.90 vs .80)
    and worst on test (.70 vs .95); alignment .30 at lr=0.1, .80 at lr=0.01."""
    rows = []
    finals = {
        "lr=0.1": {"val": 0.90, "test": 0.70, "align": 0.30},
        "lr=0.01": {"val": 0.80, "test": 0.95, "align": 0.80},
    }
    for config, final in finals.items():
        for seed in (0, 1):
            run = {
                "run_id": f"{config}-{seed}",
                "learner": "backprop",
                "learner_name": "backprop",
                "config": config,
                "task": "digits",
                "seed": seed,
                "arch": "mlp",
                "depth": 1,
                "activation": "relu",
                "batchnorm": False,
                "dropout": 0.0,
                "lr": float(config[3:]),
                "sigma": float("nan"),
                "train_fraction": float("nan"),
                "budget": "2 ep",
                "stopped_by": "epochs",
            }
            for epoch in (0, 1, 2):
                for split in ("train", "val", "test"):
                    value = final[split] if split != "train" and epoch == 2 else 0.5
                    rows.append(
                        {
                            **run,
                            "epoch": epoch,
                            "step": 10 * epoch,
                            "split": split,
                            "metric": "accuracy",
                            "layer": "",
                            "value": value + 0.001 * seed,
                        }
                    )
            rows.append(
                {
                    **run,
                    "epoch": 1,
                    "step": 10,
                    "split": "train",
                    "metric": "grad_alignment",
                    "layer": "fc1",
                    "value": final["align"],
                }
            )
    return pd.DataFrame(rows)


def test_best_configuration_is_chosen_by_validation_not_test_accuracy() -> None:
    data = _constructed_tidy()
    fig = learning_curves(FigureData.from_tidy(data), "epoch")
    (line,) = fig.axes[0].lines
    assert line.get_ydata()[-1] == pytest.approx(0.7005)  # the validation-best config's test accuracy
    assert "best val. config" in fig.legends[0].get_title().get_text()
    align = alignment_over_training(FigureData.from_tidy(data), "digits")
    drawn = [line.get_ydata()[0] for line in align.axes[0].lines if line.get_label() == "_child0"]
    assert drawn == [pytest.approx(0.30)]  # the validation-best config's alignment (the other's is .80)
    caption = standard_figures(FigureData.from_tidy(data))["curves_epochs"][0]
    assert "validation accuracy" in caption and "test accuracy plays no part" in caption


def test_best_configuration_needs_validation_accuracy_to_choose() -> None:
    data = _constructed_tidy()
    data = data[data["split"] != "val"]
    with pytest.raises(NoData, match="no validation accuracy to choose by"):
        learning_curves(FigureData.from_tidy(data), "epoch")


def test_figure_data_reads_only_what_each_figure_draws(results: Path, tmp_path: Path) -> None:
    """figure_data holds one record per run and reads a figure's metric rows when the figure is
    drawn, only of the runs it shows; every figure comes out byte for byte as from the whole
    tidy table in memory."""
    from bpbench.experiments.report.figures import FIGURE_METRICS, STEP_METRICS, figure_data, save_all

    store = RunStore(results)
    full, lean = RunTable.read(store).tidy(FIGURE_METRICS), figure_data(RunTable.read(store))
    assert len(lean.runs) == full["run_id"].nunique()
    read: list[tuple[tuple[str, ...], set[str]]] = []

    def counted(metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
        read.append((metrics, set(run_ids)))
        return lean.read_rows(metrics, run_ids)

    written_full, skipped_full = save_all(FigureData.from_tidy(full), tmp_path / "full")
    written_lean, skipped_lean = save_all(dataclasses.replace(lean, read_rows=counted), tmp_path / "lean")
    assert skipped_full == skipped_lean
    pngs = sorted(p.name for p in written_full if p.suffix == ".png")
    assert pngs == sorted(p.name for p in written_lean if p.suffix == ".png") and len(pngs) == len(EXPECTED)
    for name in pngs:
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "lean" / name).read_bytes(), name
    step_runs = set().union(*(ids for metrics, ids in read if set(metrics) & set(STEP_METRICS)))
    assert 0 < len(step_runs) < full["run_id"].nunique()  # per-step rows: only of the runs a figure shows
    assert all(len(ids) < full["run_id"].nunique() for _, ids in read)  # no figure reads every run's rows


def test_pareto_front_is_chosen_on_validation_and_drawn_at_test_accuracy() -> None:
    points = pd.DataFrame(
        {
            "learner": ["a", "b", "c", "d"],
            "config": "",
            "task": "digits",
            "flops": [1.0, 2.0, 3.0, 3.0],
            "val": [0.90, 0.80, 0.95, 0.93],
            "acc": [(0.70,) * 3, (0.99,) * 3, (0.80,) * 3, (0.97,) * 3],
        }
    )
    front = pareto_front(points)
    assert list(front["learner"]) == ["a", "c"]  # b and d have the best test accuracy, not a better validation one
    with pytest.raises(NoData, match="no validation accuracy"):
        pareto_front(points.assign(val=[0.9, float("nan"), 0.95, 0.93]))


def _norm_rows(values: dict[str, list[float]]) -> pd.DataFrame:
    run = {
        "run_id": "r",
        "learner": "ff",
        "learner_name": "ff",
        "config": "",
        "task": "digits",
        "seed": 0,
        "depth": 2,
        "epoch": 1,
        "split": "train",
        "metric": "grad_norm",
    }
    return pd.DataFrame(
        [
            {**run, "step": 5 * (i + 1), "layer": layer, "value": v}
            for layer, vs in values.items()
            for i, v in enumerate(vs)
        ]
    )


def test_heatmap_leaves_out_an_untrained_layer_and_masks_zero_and_nonfinite_cells() -> None:
    rows = _norm_rows({"fc1": [1e-3, 0.0, 1e-2, float("inf")], "fc2": [1.0, 10.0, 1.0, 10.0], "out": [0.0] * 4})
    fig = grad_norm_heatmap(FigureData.from_tidy(rows), "ff")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fc1", "fc2"]
    assert "not trained (norm 0), left out: out" in ax.get_title()
    mesh = ax.collections[0]
    assert mesh.norm.vmin == pytest.approx(-3.0) and mesh.norm.vmax == pytest.approx(1.0)  # the scale survives
    cells = mesh.get_array()
    assert int(cells.mask.sum()) == 2 and cells.compressed().size == 6  # fc1's 0 and inf are blank
    with pytest.raises(NoData, match="no finite, nonzero update-signal norm"):
        grad_norm_heatmap(FigureData.from_tidy(_norm_rows({"out": [0.0] * 3})), "ff")
    caption = standard_figures(FigureData.from_tidy(pd.concat([_constructed_tidy(), rows])))["grad_norms_ff"][0]
    assert "left blank (masked)" in caption and "left out" in caption


def test_alignment_figure_shows_the_projection_coefficient_beside_the_cosine() -> None:
    data = _constructed_tidy()
    projection = data[data["metric"] == "grad_alignment"].assign(metric="grad_projection", value=0.17)
    fig = alignment_over_training(FigureData.from_tidy(pd.concat([data, projection], ignore_index=True)), "digits")
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel()]
    labels = [ax.get_ylabel() for ax in visible]
    assert labels == ["cosine with true gradient", "projection <u,g>/|g|^2"]
    drawn = [line.get_ydata()[0] for line in visible[1].lines if line.get_label() == "_child0"]
    assert drawn == [pytest.approx(0.17)]


def _resnet_depth_data() -> FigureData:
    """fa at ResNet-8 and -14, 2 seeds each: layer k of a depth-d run has cosine k / (d - 1) + seed / 10."""
    runs, rows = [], []
    for d in (8, 14):
        for seed in (0, 1):
            run_id = f"fa-{d}-{seed}"
            runs.append(
                {
                    "run_id": run_id,
                    "learner": "fa",
                    "learner_name": "fa",
                    "task": "fashion_mnist",
                    "arch": "resnet",
                    "depth": d,
                    "activation": "relu",
                    "batchnorm": False,
                    "alignment": 0.5 + d / 100,
                    "test_acc": 0.8 - d / 100,
                }
            )
            for step in (0, 25):
                rows += [
                    {
                        "run_id": run_id,
                        "metric": "grad_alignment",
                        "layer": f"conv{k}",
                        "step": step,
                        "value": k / (d - 1) + seed / 10 + (0.02 if step else -0.02),
                    }
                    for k in range(d)
                ]
    tidy = pd.DataFrame(rows)

    def read(metrics: tuple[str, ...], run_ids: Collection[str]) -> pd.DataFrame:
        mine = tidy[tidy["metric"].isin(metrics) & tidy["run_id"].isin(set(run_ids))]
        return mine.merge(pd.DataFrame(runs)[["run_id", "learner", "depth", "task"]], on="run_id")

    return FigureData(runs=pd.DataFrame(runs), read_rows=read, read_curves=pd.DataFrame)


def test_a_resnets_depth_is_its_weight_layers_and_alignment_is_drawn_by_layer_and_depth() -> None:
    assert depth({"arch": "resnet", "depth": 14, "hidden": [256, 256]}) == 14
    assert depth({"arch": "mlp", "depth": 20, "hidden": [64, 64, 64]}) == 3
    data = _resnet_depth_data()
    fig = alignment_by_layer(data)
    lines = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert sorted(len(line.get_xdata()) for line in lines) == [8, 14]  # one point per weight layer
    for line in lines:
        x, y = line.get_xdata(), line.get_ydata()
        assert x[0] == 0.0 and x[-1] == 1.0  # first and last weight layer, in forward order
        assert y == pytest.approx(x + 0.05)  # mean over steps (+-0.02) and seeds (0, .1)
    assert fig.axes[0].get_xlabel().startswith("layer") and fig.legends[0].get_title().get_text().startswith("weight")
    depth_fig = against_depth(data, "alignment")
    assert depth_fig.axes[0].get_xlabel() == "weight layers (ResNet depth)"
    assert list(depth_fig.axes[0].get_xticks()) == [8, 14]
    for measure in ("alignment", "test_acc"):
        line = against_depth(data, measure).axes[0].get_lines()[0]  # the mean line, drawn first
        expected = [0.58, 0.64] if measure == "alignment" else [0.72, 0.66]
        assert list(line.get_ydata()) == pytest.approx(expected)
    flat = dataclasses.replace(data, runs=data.runs.assign(alignment=float("nan")))
    with pytest.raises(NoData, match="alignment"):
        alignment_by_layer(flat)
