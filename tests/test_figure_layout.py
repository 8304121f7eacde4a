"""Figures fit to print: legends and labels inside the canvas and apart, no warnings while drawing
(report/figure_layout.py; ``python -m scripts.check_figures DIR`` runs the same check on any folder)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from bpbench.experiments.report.figure_layout import folder_problems, layout_problems
from helpers import run_tiny_study

# every drawer gets data: an lr grid crossed with another option (lr_sensitivity), two depths
# (against_depth), feedback alignment (alignment panels, heatmaps), many configurations (legends)
STUDY = """
description = "tiny layout study"
seeds = 2
tasks = ["digits"]
[model]
hidden = [[16], [16, 16]]
activation = ["relu", "tanh"]
[budget]
epochs = 2
[schedule]
health_every = 5
[learners.backprop]
lr = [0.003, 0.03]
[learners.fa]
lr = 0.003
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny_study(tmp_path_factory.mktemp("layout"), STUDY)


def test_every_figure_of_a_folder_is_fit_to_print(results: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "identical low and high xlims"
        problems = folder_problems(results)
    assert {"curves_epochs", "accuracy_vs_flops", "lr_sensitivity", "grad_ratio_vs_depth", "alignment_digits"} <= set(
        problems
    )
    assert not {name: found for name, found in problems.items() if found}


def test_a_clipped_legend_and_overlapping_titles_are_caught() -> None:
    fig = Figure(figsize=(4, 3))
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], [0, 1], label="a rather long legend entry")
    left.legend(loc="upper left", bbox_to_anchor=(1.8, 1.0))
    left.set_title("a very long panel title that runs into its neighbour")
    right.set_title("the neighbour's own long title")
    problems = layout_problems(fig)
    assert any(p.startswith("legend 0 leaves the canvas") for p in problems), problems
    assert "axes 0 title overlaps axes 1 title" in problems
    tidy = Figure(figsize=(4, 3), layout="constrained")
    ax = tidy.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.legend()
    ax.set(title="fine", xlabel="x", ylabel="y")
    assert layout_problems(tidy) == []


def committed_studies() -> list[Path]:
    from helpers import REPO

    return sorted(p.parent for p in (REPO / "results").glob("*/metadata.json"))


@pytest.mark.parametrize("folder", committed_studies(), ids=lambda p: p.name)
def test_every_committed_figure_was_checked_fit_to_print_when_drawn(folder: Path) -> None:
    """The committed folders hold no runs to redraw from, so ``scripts.reference_results`` checks each
    figure's layout from the runs as it draws it and records the PNG's SHA-256 beside the result: every
    committed PNG must be that checked figure, and have no problem."""
    import hashlib
    import json

    layout = json.loads((folder / "metadata.json").read_text()).get("figure_layout")
    assert layout is not None, f"{folder.name}: published before the layout record; regenerate it"
    pngs = {p.name: p for p in (folder / "figures").glob("*.png")}
    assert set(pngs) == set(layout)
    for name, path in pngs.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == layout[name]["sha256"], f"{name}: redrawn unchecked"
        assert layout[name]["problems"] == [], name
