"""Comparisons a reviewer accepts (issue 24): time to target, performance profiles, ranks and the
Friedman test, Holm-adjusted p, the difference to the reference with its Welch interval, accuracy
intervals within [0, 1], and the scoring of a real (tiny) results folder through DuckDB."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.config import ConfigError
from bpbench.experiments.report import ranking
from bpbench.experiments.report.render import render
from bpbench.experiments.report.score_table import score, score_runs
from bpbench.experiments.report.scoring import curves_from_tidy, first_reached
from bpbench.experiments.report.stats import bounded_interval, holm, min_detectable_difference, t_interval, welch_diff
from bpbench.experiments.report.summary import summarize, summarize_runs
from bpbench.experiments.store.compact import compact
from bpbench.experiments.store.curves import scan_curves
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from conftest import run_tiny_study

INF = math.inf


def _curve(run_id: str, accs: list[float], task: str = "digits") -> pd.DataFrame:
    epochs = np.arange(len(accs))
    return pd.DataFrame(
        {
            "run_id": run_id,
            "task": task,
            "epoch": epochs,
            "val_acc": accs,
            "flops": epochs * 1e6,
            "seconds": epochs * 0.5,
            "samples": epochs * 100.0,
        }
    )


def test_time_to_target_first_crossing_never_and_lost() -> None:
    curves = pd.concat(
        [
            _curve("exact", [0.1, 0.5, 0.89, 0.90, 0.95]),  # 0.90 >= 0.90 at epoch 3
            _curve("never", [0.1, 0.5, 0.89, 0.899, 0.85]),
            _curve("lost", [0.1, 0.92, 0.5, 0.3, 0.2]),  # reached at 1, then lost: 1 counts
            _curve("other", [0.1, 0.2, 0.3], task="fsdd"),
        ]
    )
    ttt = first_reached(curves, {"digits": 0.90}).set_index("run_id")
    assert ttt.loc["exact", "reached"] and ttt.loc["exact", "ttt_epochs"] == 3
    assert (ttt.loc["exact", "ttt_flops"], ttt.loc["exact", "ttt_seconds"], ttt.loc["exact", "ttt_samples"]) == (
        3e6,
        1.5,
        300.0,
    )
    assert not ttt.loc["never", "reached"] and math.isnan(ttt.loc["never", "ttt_flops"])
    assert ttt.loc["lost", "reached"] and ttt.loc["lost", "ttt_epochs"] == 1 and ttt.loc["lost", "ttt_flops"] == 1e6
    assert math.isnan(ttt.loc["other", "target"]) and not ttt.loc["other", "reached"]  # no target for fsdd


def test_performance_profile_and_area_on_a_hand_made_table() -> None:
    # tasks x learners: a reaches first on t1, b on t2 (a at 2x), c never on t1 and 3x on t2
    times = pd.DataFrame({"a": [1.0, 20.0], "b": [2.0, 10.0], "c": [INF, 30.0]}, index=["t1", "t2"])
    profile = ranking.performance_profile(times, [1.0, 1.5, 2.0, 3.0, 4.0])
    assert profile["a"].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert profile["b"].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert profile["c"].tolist() == [0.0, 0.0, 0.0, 0.5, 0.5]  # never reached t1: infinite
    area = ranking.profile_area(times, cap=4.0)
    # per task: (cap - ratio) / (cap - 1), averaged over the 2 tasks
    assert area["a"] == pytest.approx(((4 - 1) / 3 + (4 - 2) / 3) / 2)
    assert area["c"] == pytest.approx((0 + (4 - 3) / 3) / 2)
    nobody = pd.DataFrame({"a": [INF], "b": [INF]}, index=["t"])
    assert ranking.profile_area(nobody).tolist() == [0.0, 0.0]


def test_ranks_friedman_and_nemenyi_equal_the_libraries() -> None:
    acc = pd.DataFrame(
        {"a": [0.9, 0.8, 0.95, 0.7], "b": [0.85, 0.82, 0.9, 0.6], "c": [0.5, 0.6, 0.7, 0.65]},
        index=["t1", "t2", "t3", "t4"],
    )
    ranks = ranking.average_ranks(acc, higher_is_better=True)
    assert ranks.to_dict() == {"a": 1.25, "b": 2.0, "c": 2.75}  # t1 1,2,3; t2 2,1,3; t3 1,2,3; t4 1,3,2
    stat, p = ranking.friedman(acc)
    expected = stats.friedmanchisquare(acc["a"], acc["b"], acc["c"])
    assert (stat, p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert stat == pytest.approx(12 * 4 / (3 * 4) * (1.25**2 + 2.0**2 + 2.75**2) - 3 * 4 * 4)  # by the formula
    assert np.allclose(ranking.nemenyi(acc).to_numpy(), sp.posthoc_nemenyi_friedman(acc.to_numpy()).to_numpy())
    assert math.isnan(ranking.friedman(acc[["a", "b"]])[0])  # two learners: n/a, not a number


def _runs(learner: str, accs: list[float], task: str = "digits") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "learner": learner,
            "learner_name": learner,
            "config": "",
            "task": task,
            "seed": range(len(accs)),
            "test_acc": accs,
            "val_acc": accs,
            "gap": 0.0,
            "train_s": 1.0,
            "flops": 1e9,
            "samples": 1e3,
            "synops": math.nan,
            "energy": math.nan,
            "peak_mem": 1.0,
            "grad_ratio": 1.0,
            "alignment": 1.0,
            "budget": "5 ep",
            "stopped_by": "epochs",
            "chance": 0.1,
            "run_id": [f"{learner}-{task}-{i}" for i in range(len(accs))],
        }
    )


BP, FA, DFA, SS = [0.95, 0.96, 0.97], [0.93, 0.95, 0.96], [0.80, 0.83, 0.79], [0.94, 0.90, 0.97]


def test_holm_adjusted_p_equals_statsmodels_and_raw_on_request() -> None:
    runs = pd.concat([_runs("backprop", BP), _runs("fa", FA), _runs("dfa", DFA), _runs("sign_symmetry", SS)])
    summary = summarize_runs(runs).rows.set_index("learner")
    raw = [stats.ttest_ind(a, BP, equal_var=False).pvalue for a in (FA, DFA, SS)]
    expected = multipletests(raw, method="holm")[1]
    assert summary.loc[["fa", "dfa", "sign_symmetry"], "p_vs_reference"].tolist() == pytest.approx(list(expected))
    assert summary.loc[["fa", "dfa", "sign_symmetry"], "p_raw"].tolist() == pytest.approx(raw)
    assert expected[0] > raw[0]  # the adjustment is not the identity here
    text = render(summarize_runs(runs), "text")
    assert "p vs backprop (Holm-adjusted)" in text and "Holm-adjusted over the 3 comparisons" in text
    unadjusted = summarize_runs(runs, p_adjust="raw").rows.set_index("learner")
    assert unadjusted.loc[["fa", "dfa", "sign_symmetry"], "p_vs_reference"].tolist() == pytest.approx(raw)
    assert "p vs backprop (raw)" in render(summarize_runs(runs, p_adjust="raw"), "text")
    adjusted = holm([0.01, math.nan, 0.04, 0.03])
    assert math.isnan(adjusted[1]) and adjusted[[0, 2, 3]].tolist() == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="--p 'bonferroni'"):
        summarize_runs(runs, p_adjust="bonferroni")


def test_difference_interval_equals_a_direct_welch_computation() -> None:
    a, b = np.array(DFA), np.array(BP)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert welch_diff(DFA, BP) == (pytest.approx(diff), pytest.approx(diff - half), pytest.approx(diff + half))
    # scipy's own Welch interval agrees (ttest_ind(...).confidence_interval)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch_diff(DFA, BP)[1:] == (pytest.approx(ci.low), pytest.approx(ci.high))
    row = summarize_runs(pd.concat([_runs("backprop", BP), _runs("dfa", DFA)])).rows.set_index("learner").loc["dfa"]
    assert (row["diff_mean"], row["diff_low"], row["diff_high"]) == (
        pytest.approx(diff),
        pytest.approx(diff - half),
        pytest.approx(diff + half),
    )


def test_accuracy_intervals_never_leave_zero_one() -> None:
    assert bounded_interval([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    near = [1.0, 1.0, 0.99]
    assert t_interval(near)[2] > 1.0  # what the table printed before: above 1
    mean, low, high = bounded_interval(near)
    assert low < 0.99 <= mean <= high == 1.0  # the t-interval, clipped at 1 (not the seeds' [min, max])
    runs = pd.concat([_runs("backprop", [1.0, 1.0, 1.0]), _runs("fa", near), _runs("dfa", [0.0, 0.0, 0.02])])
    summary = summarize_runs(runs)
    assert (summary.rows["test_acc_high"] <= 1.0).all() and (summary.rows["test_acc_low"] >= 0.0).all()
    assert "1.000 (all 3 seeds equal: no spread)" in render(summary, "text")  # not a zero-width "interval"


def test_minimum_detectable_difference_is_statsmodels_power() -> None:
    effect = TTestIndPower().solve_power(nobs1=3, alpha=0.05, power=0.8, ratio=1.0)
    assert min_detectable_difference(0.01, 3) == pytest.approx(effect * 0.01)
    assert effect > 2.5  # three seeds detect only large effects: 2.9 standard deviations
    summary = summarize_runs(pd.concat([_runs("backprop", BP), _runs("dfa", DFA)]))
    pooled = math.sqrt((np.var(BP, ddof=1) + np.var(DFA, ddof=1)) / 2)
    assert f"digits {effect * pooled:.3f} (n = 3" in render(summary, "text")


def test_iqm_and_score_table_on_hand_made_runs() -> None:
    runs = pd.concat(
        [
            _runs(name, accs, task)
            for task in ("t1", "t2")
            for name, accs in (("backprop", BP), ("fa", [0.85, 0.95, 0.96]), ("dfa", DFA))
        ]
    )
    runs["target"] = 0.9
    for measure, scale in (("epochs", 1.0), ("flops", 1e6), ("seconds", 0.5), ("samples", 100.0)):
        runs[f"ttt_{measure}"] = np.where(runs["test_acc"] >= 0.9, runs["seed"] + 1.0, np.nan) * scale
    runs["reached"] = runs["ttt_epochs"].notna()
    scores, why = ranking.iqm_scores(runs, "backprop")
    assert why == ""
    norm = (np.array(BP) - 0.1) / (np.mean(BP) - 0.1)
    assert scores.loc["backprop", "iqm"] == pytest.approx(stats.trim_mean(np.concatenate([norm, norm]), 0.25))
    assert scores.loc["backprop", "low"] <= scores.loc["backprop", "iqm"] <= scores.loc["backprop", "high"]
    table = score_runs(runs, "backprop").rows.set_index("learner")
    assert table.loc["backprop", "rank_acc"] == 1.0 and table.loc["dfa", "rank_acc"] == 3.0
    assert table.loc["dfa", "reached"] == 0 and table.loc["dfa", "profile_area"] == 0.0
    assert table.loc["backprop", "profile_area"] == 1.0  # median 2 epochs on both tasks, fa's median 3 (inf, 2, 3)
    assert table.loc["fa", "profile_area"] == pytest.approx((4 - 1.5) / 3)


def test_study_targets_and_seed_splits_are_validated(tmp_path: Path) -> None:
    from bpbench.experiments.plan.registry import learner_registry, task_registry
    from bpbench.experiments.plan.study import load_study

    base = {"seeds": 2, "tasks": ["digits"], "budget": {"epochs": 1}, "learners": {"backprop": {}}}
    for bad, message in (
        ({"digits": 1.5}, r"targets.digits = 1.5: expected a validation accuracy in \(0, 1\]"),
        ({"fsdd": 0.9}, "targets.fsdd: not a task label of this study; allowed: digits"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_study({**base, "targets": bad}, None, learner_registry(), task_registry())
    with pytest.raises(ConfigError, match="seeds_resample_split = 'yes'"):
        load_study({**base, "seeds_resample_split": "yes"}, None, learner_registry(), task_registry())
    shared = load_study(base, None, learner_registry(), task_registry()).runs
    own = load_study({**base, "seeds_resample_split": True}, None, learner_registry(), task_registry()).runs
    assert [r.task_params["split_seed"] for r in shared] == [0, 0]
    assert [r.task_params["split_seed"] for r in own] == [0, 1]
    assert [
        r.run_id
        for r in load_study({**base, "targets": {"digits": 0.9}}, None, learner_registry(), task_registry()).runs
    ] == [r.run_id for r in shared]  # ids unchanged


STUDY = """
description = "scoring tests: backprop, fa and dfa on digits, 2 seeds"
seeds = 2
tasks = ["digits"]
[targets]
digits = 0.5
[model]
hidden = [16]
[budget]
epochs = 3
[schedule]
health_every = 50
[learners.backprop]
lr = 0.01
[learners.fa]
lr = 0.01
[learners.dfa]
lr = 0.0001
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny_study(tmp_path_factory.mktemp("scoring"), STUDY)


def test_duckdb_curves_equal_the_tidy_rows_before_and_after_compaction(folder: Path, tmp_path: Path) -> None:
    store = RunStore(folder)
    from_tidy = (
        curves_from_tidy(RunTable.read(store).tidy())
        .drop(columns="task")
        .sort_values(["run_id", "epoch"], ignore_index=True)
    )
    ids = pd.Series(from_tidy["run_id"].unique())
    assert len(ids) == 6 and len(from_tidy) == 6 * 4  # epochs 0..3
    from_folders = scan_curves(store, ids).sort_values(["run_id", "epoch"], ignore_index=True)
    pd.testing.assert_frame_equal(from_folders, from_tidy, check_dtype=False)
    copy = shutil.copytree(folder, tmp_path / "copy")
    compact(copy)
    assert not list((copy / "runs").glob("*/metrics.parquet"))
    from_dataset = scan_curves(RunStore(copy), ids).sort_values(["run_id", "epoch"], ignore_index=True)
    pd.testing.assert_frame_equal(from_dataset, from_tidy, check_dtype=False)


def test_table_and_score_of_a_results_folder(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = summarize(RunTable.read(RunStore(folder))).rows.set_index("learner")
    assert summary.loc["backprop", "reached"] == 2 and summary.loc["backprop", "ttt_n"] == 2
    assert summary.loc["dfa", "reached"] == 0 and summary.loc["dfa", "ttt_epochs_median"] == math.inf
    capsys.readouterr()
    assert main(["table", str(folder), "--columns", "label,test_accuracy,p,ttt_epochs,reached"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "learner",
        "test",
        "acc",
        "p",
        "vs",
        "backprop",
        "(Holm-adjusted)",
        "epochs",
        "to",
        "target",
        "reached",
    ]
    assert "not reached" in next(line for line in lines if line.startswith("dfa"))
    assert "digits 0.500 (the study's)" in "\n".join(lines)
    assert main(["table", str(folder), "--columns", "label,nope"]) == 2
    assert "--columns 'nope': allowed: label," in capsys.readouterr().err
    assert main(["table", str(folder), "--score", "--format", "csv"]) == 0
    scores = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("learner")
    assert scores.loc["backprop", "profile_area"] > scores.loc["dfa", "profile_area"] == 0.0
    assert scores.loc["backprop", "iqm"] == pytest.approx(1.0, abs=0.1)
    with pytest.raises(SystemExit, match="2"):
        main(["table", str(folder), "--score", "--measure", "hours"])
    assert "invalid choice: 'hours'" in capsys.readouterr().err
    assert score(RunTable.read(RunStore(folder)), measure="seconds").measure == "seconds"


def test_a_metrics_file_linking_out_of_the_folder_is_named_and_not_read(folder: Path, tmp_path: Path) -> None:
    from bpbench.experiments.store.dataset import ResultsWarning

    copy = shutil.copytree(folder, tmp_path / "copy")
    victim = sorted((copy / "runs").glob("*/metrics.parquet"))[0]
    outside = tmp_path / "outside.parquet"
    shutil.move(victim, outside)
    victim.symlink_to(outside)
    ids = pd.Series([p.name for p in (copy / "runs").iterdir()])
    with pytest.warns(ResultsWarning, match="links out of the results folder"):
        curves = scan_curves(RunStore(copy), ids)
    assert victim.parent.name not in set(curves["run_id"]) and curves["run_id"].nunique() == 5
