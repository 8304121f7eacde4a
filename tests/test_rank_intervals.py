"""Across-task statistics only where the data support them (report/ranking.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bpbench.experiments.report import ranking
from bpbench.experiments.report.figure_data import FigureData
from bpbench.experiments.report.figures import NoData
from bpbench.experiments.report.score_figures import critical_difference


def _runs(table: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = []
    for learner, tasks in table.items():
        for task, accs in tasks.items():
            for seed, acc in enumerate(accs):
                rows.append(
                    {
                        "run_id": f"{learner}-{task}-{seed}",
                        "learner": learner,
                        "learner_name": "backprop",
                        "task": task,
                        "config": "",
                        "seed": seed,
                        "test_acc": acc,
                        "val_acc": acc,
                    }
                )
    return pd.DataFrame(rows)


def test_no_critical_difference_diagram_unless_friedman_rejects() -> None:
    mixed = _runs(
        {
            "a": {"t1": [0.90, 0.91], "t2": [0.80, 0.81]},
            "b": {"t1": [0.85, 0.86], "t2": [0.85, 0.86]},
            "c": {"t1": [0.80, 0.81], "t2": [0.90, 0.91]},
        }
    )
    matrix = ranking.complete(ranking.accuracy_matrix(mixed))
    drawn, why = ranking.draws_cd(matrix)
    assert not drawn and "does not reject" in why and "2 tasks" in why
    assert "rests on 2 task(s)" in ranking.ranking_note(matrix) and "does not reject" in ranking.ranking_note(matrix)
    with pytest.raises(NoData, match="does not reject"):
        critical_difference(FigureData(mixed, lambda metrics, ids: pd.DataFrame(), pd.DataFrame))


def test_rank_interval_is_tight_for_a_constant_winner_and_wide_when_tasks_disagree() -> None:
    rng = np.random.default_rng(0)
    table = {
        name: {f"t{t}": list(base + off + rng.normal(0, 0.002, 3)) for t, off in enumerate(offsets)}
        for name, base, offsets in [
            ("best", 0.99, [0, 0, 0, 0]),
            ("x", 0.80, [0.1, -0.1, 0.1, -0.1]),
            ("y", 0.80, [-0.1, 0.1, -0.1, 0.1]),
        ]
    }
    runs = _runs(table)
    ci = ranking.rank_intervals(runs, ["best", "x", "y"])
    assert (ci.loc["best", "low"], ci.loc["best", "high"]) == (1.0, 1.0)
    assert ci.loc["x", "low"] == 2.0 and ci.loc["x", "high"] == 3.0  # tasks resampled: either order


def test_iqm_interval_resamples_tasks_too() -> None:
    """Two tasks at very different scores with no seed spread: a stratified (seeds-only) bootstrap
    gives a zero-width interval; resampling tasks does not."""
    strata = [np.full(3, 0.5), np.full(3, 1.0)]
    low, high = ranking.hierarchical_iqm(strata, np.random.default_rng(0))
    assert low == pytest.approx(0.5) and high == pytest.approx(1.0)
