"""Verdicts, interval coverage and power of the summary table (report/verdicts.py, power.py, stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.plan.verdict import DEFAULT_MARGIN, study_margin
from bpbench.experiments.report import power, verdicts
from bpbench.experiments.report.render import render
from bpbench.experiments.report.stats import bounded_interval, diff_interval, welch_diff, welch_se_df
from bpbench.experiments.report.summary import Summary, summarize_runs

NOMINAL = 0.95
SIMULATIONS = 4000


@pytest.mark.parametrize("n", [3, 5, 10])
def test_accuracy_interval_keeps_nominal_coverage(n: int) -> None:
    """Seed accuracies around .93 with sd .012 (quick's spread): the clipped t-interval covers the
    true mean within 2 points of 95% (a percentile bootstrap covers ~.76 at n = 3)."""
    rng = np.random.default_rng(n)
    truth = 0.93
    draws = np.clip(rng.normal(truth, 0.012, size=(SIMULATIONS, n)), 0.0, 1.0)
    hits = 0
    for row in draws:
        _, low, high = bounded_interval(row)
        hits += low <= truth <= high
    assert abs(hits / SIMULATIONS - NOMINAL) < 0.02, hits / SIMULATIONS


def test_three_seed_interval_is_not_min_max() -> None:
    values = [0.907, 0.921, 0.931]
    _, low, high = bounded_interval(values)
    assert low < min(values) and high > max(values)
    assert bounded_interval([0.99, 1.0, 1.0])[2] == 1.0  # clipped, never above 1


def test_family_level_difference_interval_is_bonferroni_and_bounded() -> None:
    a, b = [0.5, 0.9, 0.1], [0.92, 0.93, 0.94]
    se, df = welch_se_df(a, b)
    diff = float(np.mean(a) - np.mean(b))
    low, high = diff_interval(diff, se, df, 1 - 0.05 / 20)
    half = scipy_stats.t.ppf(1 - 0.05 / 40, df) * se
    assert low == pytest.approx(max(-1.0, diff - half)) and high == pytest.approx(min(1.0, diff + half))
    assert low == -1.0  # unbounded it would run below -1
    assert welch_diff([0.0, 0.0, 0.01], [1.0, 0.99, 1.0])[1] >= -1.0


def _runs(label: str, accs: list[float], task: str = "digits") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": [f"{label}-{task}-{i}" for i in range(len(accs))],
            "learner": label,
            "learner_name": label if label in ("backprop", "fa", "dfa", "sign_symmetry") else "fa",
            "config": "",
            "task": task,
            "seed": range(len(accs)),
            "budget": "5 ep",
            "stopped_by": "epochs",
            "test_acc": accs,
        }
    )


BP = [0.940, 0.942, 0.944, 0.941, 0.943]


def _table() -> Summary:
    runs = pd.concat(
        [
            _runs("backprop", BP),
            _runs("sign_symmetry", [0.941, 0.943, 0.942, 0.940, 0.944]),  # equivalent within .01
            _runs("fa", [0.90, 0.94, 0.93, 0.91, 0.95]),  # wide: inconclusive
            _runs("dfa", [0.80, 0.81, 0.79, 0.80, 0.805]),  # clearly worse
        ]
    )
    return summarize_runs(runs, margin=0.01)


def test_each_comparison_gets_better_worse_equivalent_or_inconclusive() -> None:
    table = _table()
    summary = table.rows.set_index("learner")
    assert summary.loc["backprop", "verdict"] == "ref"
    assert summary.loc["sign_symmetry", "verdict"] == "equivalent ±0.01"
    assert summary.loc["dfa", "verdict"] == "worse"
    assert summary.loc["fa", "verdict"].startswith("inconclusive: run ")
    raw = ttost_ind(np.array([0.941, 0.943, 0.942, 0.940, 0.944]), np.array(BP), -0.01, 0.01, usevar="unequal")[0]
    assert summary.loc["sign_symmetry", "tost_p"] == pytest.approx(min(1.0, 3 * raw))  # Holm: smallest of 3
    text = render(table, "text")
    assert "equivalent ±0.01" in text and "margin ±0.01" in text and "TOST" in text and "Holm" in text
    assert "Bonferroni level 1 - 0.05/3" in text


def test_a_wider_margin_turns_inconclusive_into_equivalent() -> None:
    runs = pd.concat([_runs("backprop", BP), _runs("fa", [0.935, 0.945, 0.94, 0.938, 0.946])])
    assert summarize_runs(runs, margin=0.002).rows.set_index("learner").loc["fa", "verdict"].startswith("inconclusive")
    assert summarize_runs(runs, margin=0.05).rows.set_index("learner").loc["fa", "verdict"] == "equivalent ±0.05"


def test_seeds_to_decide_matches_statsmodels_power() -> None:
    alpha = power.family_alpha(3)
    assert alpha == pytest.approx(0.05 / 3)
    n = TTestIndPower().solve_power(effect_size=0.005 / 0.01, alpha=alpha, power=0.9, alternative="larger")
    assert power.seeds_to_decide(0.005, 0.01, 0.01, alpha) == math.ceil(n)
    n = TTestIndPower().solve_power(effect_size=0.03 / 0.01, alpha=alpha, power=0.8)
    assert power.seeds_to_decide(-0.03, 0.01, 0.01, alpha) == max(2, math.ceil(n))
    assert power.seeds_to_decide(0.0099, 0.01, 0.01, alpha) is None  # just inside the margin: past 1000 seeds
    effect = TTestIndPower().solve_power(nobs1=3, alpha=alpha, power=0.8)
    assert power.mdd(0.01, 3, alpha) == pytest.approx(effect * 0.01)
    assert power.mdd(0.01, 3, alpha) > power.mdd(0.01, 3, 0.05)  # the corrected level needs a larger difference


def test_power_note_is_at_holms_first_step() -> None:
    text = render(_table(), "text")
    assert "alpha 0.05/3 = 0.017 (Holm's first step" in text and "equivalence needs" in text


def test_study_margin_is_validated() -> None:
    assert study_margin({}) == DEFAULT_MARGIN == 0.01
    assert study_margin({"verdict": {"margin": 0.02}}) == 0.02
    for bad in (0, 1.5, "0.01", True):
        with pytest.raises(ConfigError, match=r"verdict\.margin"):
            study_margin({"verdict": {"margin": bad}})
    with pytest.raises(ConfigError, match=r"verdict\.marg"):
        study_margin({"verdict": {"marg": 0.01}})


def test_one_seed_row_says_it_has_no_interval() -> None:
    summary = summarize_runs(pd.concat([_runs("backprop", BP), _runs("fa", [0.93])]))
    text = render(summary, "text")
    assert "0.930 (1 seed: an interval needs at least 2)" in text
    assert summary.rows.set_index("learner").loc["fa", "verdict"] == "n/a"


def test_latex_verdicts_are_short() -> None:
    assert verdicts.short("inconclusive: run 12 seeds to decide") == "inconcl. (12)"
    assert verdicts.short("equivalent ±0.01") == "equiv."
