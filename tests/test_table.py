"""Statistics and tables: t-intervals and Welch's test on known samples, equal-compute budgets,
unequal budgets labelled, and the LaTeX table compiled by pdflatex (booktabs)."""

from __future__ import annotations

import io
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from apt_tools import require
from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.config import ConfigError, build
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import Budget
from bpbench.experiments.plan.study import expand, load_study, study_references
from bpbench.experiments.report.render import render
from bpbench.experiments.report.stats import stars, t_interval, welch_p
from bpbench.experiments.report.summary import measures_shown, per_run, reference_of, summarize, summarize_runs
from bpbench.experiments.run.runner import run
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from conftest import run_tiny_study

TINY_STUDY = """
description = "two backprop labels on digits, the second with a longer budget"
seeds = 2
tasks = ["digits"]
[model]
hidden = [32]
[budget]
epochs = 2
[schedule]
health_every = 5
[learners.backprop]
lr = 0.003
[learners.backprop_long]
learner = "backprop"
lr = 0.003
[learners.backprop_long.budget]
epochs = 3
"""


def test_t_interval_on_known_sample() -> None:
    # mean .94, sd .0316228, sem .0141421, t(.975, df=4) = 2.7764451 (printed tables): half-width .0392644
    mean, low, high = t_interval([0.90, 0.92, 0.94, 0.96, 0.98])
    assert mean == pytest.approx(0.94)
    assert low == pytest.approx(0.94 - 0.0392644, abs=1e-6) and high == pytest.approx(0.94 + 0.0392644, abs=1e-6)
    assert t_interval([0.5, math.nan, 0.7])[0] == pytest.approx(0.6)  # a missing value is dropped, not a 0
    one = t_interval([0.8])
    assert one[0] == 0.8 and math.isnan(one[1]) and math.isnan(one[2])
    with pytest.raises(ValueError, match=r"confidence = 1\.5"):
        t_interval([1.0, 2.0], confidence=1.5)


def test_welch_on_known_sample() -> None:
    a, b = [1, 2, 3, 4, 5], [2, 4, 6, 8, 10]
    # by hand: se = sqrt(2.5/5 + 10/5), t = -3/se = -1.8974, Welch-Satterthwaite df = 5.882;
    # two-sided p from integrating Student's t density numerically: 0.1075312
    assert welch_p(a, b) == pytest.approx(0.1075312, abs=1e-6)
    assert math.isnan(welch_p([1.0], b))
    assert stars(0.0004) == "***" and stars(0.004) == "**" and stars(0.04) == "*" and stars(0.2) == ""
    assert stars(math.nan) == ""


def _runs(
    learner: str, name: str, accs: list[float], budget: str = "5 ep", stopped: str = "epochs", config: str = ""
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "learner": learner,
            "learner_name": name,
            "config": config,
            "task": "digits",
            "seed": range(len(accs)),
            "test_acc": accs,
            "gap": 0.01,
            "train_s": 1.0,
            "flops": 1e9,
            "samples": 1000.0,
            "synops": math.nan,
            "energy": math.nan,
            "peak_mem": 2.0**20,
            "grad_ratio": 1.0,
            "alignment": 1.0,
            "budget": budget,
            "stopped_by": stopped,
        }
    )


def test_welch_marks_and_missing_metrics_show_as_na() -> None:
    runs = pd.concat([_runs("backprop", "backprop", [0.95, 0.96, 0.97]), _runs("dfa", "dfa", [0.80, 0.81, 0.79])])
    summary = summarize_runs(runs)
    dfa = summary.rows[summary.rows["learner"] == "dfa"].iloc[0]
    assert dfa["p_vs_reference"] == pytest.approx(
        stats.ttest_ind([0.80, 0.81, 0.79], [0.95, 0.96, 0.97], equal_var=False).pvalue, rel=1e-9
    )
    assert dfa["p_vs_reference"] < 0.001 and dfa["reference"] == "backprop"
    text = render(summary, "text")
    dfa_line = next(line for line in text.splitlines() if line.startswith("dfa"))
    assert "***" in dfa_line and "n/a" in dfa_line and "0.800 [0.775, 0.825]" in dfa_line  # t-interval
    assert "ref" in next(line for line in text.splitlines() if line.startswith("backprop"))
    assert "unequal" not in text and not summary.rows["unequal_budget"].any()


def _welch(a: list[float], b: list[float]) -> float:
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


LONG, BP, DFA = [0.96, 0.97, 0.98], [0.90, 0.91, 0.92], [0.80, 0.83, 0.79]


def test_reference_is_one_label_never_pooled_with_another_label_of_the_same_learner() -> None:
    runs = pd.concat(
        [_runs("backprop", "backprop", BP), _runs("backprop_long", "backprop", LONG), _runs("dfa", "dfa", DFA)]
    )
    p = summarize_runs(runs).rows.set_index("learner")["p_raw"]
    assert p["backprop_long"] == pytest.approx(_welch(LONG, BP), rel=1e-9)  # 0.0018, not the pooled 0.090
    assert p["backprop_long"] == pytest.approx(0.0018, abs=5e-5)
    assert p["dfa"] == pytest.approx(_welch(DFA, BP), rel=1e-9) and math.isnan(p["backprop"])
    other = summarize_runs(runs, reference="backprop_long")
    p = other.rows.set_index("learner")["p_raw"]
    assert p["backprop"] == pytest.approx(_welch(BP, LONG), rel=1e-9) and p["dfa"] == pytest.approx(_welch(DFA, LONG))
    text = render(other, "text")
    assert "p vs backprop_long" in text and "against the runs of the one learner label 'backprop_long'" in text
    assert "ref" in next(line for line in text.splitlines() if line.startswith("backprop_long"))


def test_reference_configuration_is_the_one_whose_grid_values_the_row_shares() -> None:
    ref = {"lr=0.01": [0.90, 0.91, 0.93], "lr=0.1": [0.70, 0.74, 0.71]}
    fa = {"lr=0.01": [0.85, 0.86, 0.84], "lr=0.1": [0.80, 0.78, 0.83]}
    runs = pd.concat(
        [
            *(_runs("backprop", "backprop", a, config=c) for c, a in ref.items()),
            *(_runs("fa", "fa", a, config=c) for c, a in fa.items()),
            _runs("dfa", "dfa", DFA, config="hidden=64"),
        ]
    )
    summary = summarize_runs(runs).rows.set_index(["learner", "config"])
    for config in ref:
        assert summary.loc[("fa", config), "p_raw"] == pytest.approx(_welch(fa[config], ref[config]))
        assert summary.loc[("fa", config), "reference"] == f"backprop ({config})"
    assert math.isnan(summary.loc[("dfa", "hidden=64"), "p_raw"])  # no backprop config matches
    one = pd.concat([_runs("backprop", "backprop", BP), _runs("fa", "fa", fa["lr=0.1"], config="lr=0.1")])
    assert summarize_runs(one).rows.set_index("learner").loc["fa", "p_raw"] == pytest.approx(
        _welch(fa["lr=0.1"], BP)
    )  # a reference that varies nothing matches every row


def test_rows_compare_by_their_own_option_values_and_per_learner_references() -> None:
    """An MLP-only rule with no grid of its own (pc) against a backprop arch grid is compared with
    backprop's arch=mlp runs (its runs' own arch); a tanh rule that names a tanh partner as its
    reference is compared with that partner, the others with backprop."""
    arch = {"arch=lenet": [0.90, 0.91, 0.89], "arch=mlp": [0.88, 0.87, 0.88]}
    pc, dtp, tanh = [0.86, 0.87, 0.85], [0.84, 0.85, 0.83], [0.87, 0.86, 0.88]
    runs = pd.concat(
        [
            *(
                _runs("backprop", "backprop", a, config=c).assign(values=json.dumps({"arch": c[5:]}))
                for c, a in arch.items()
            ),
            _runs("pc", "pc", pc).assign(values=json.dumps({"arch": "mlp"})),
            _runs("backprop_tanh", "backprop", tanh).assign(values=json.dumps({"arch": "mlp"})),
            _runs("dtp", "dtp", dtp).assign(values=json.dumps({"arch": "mlp"})),
        ]
    )
    summary = summarize_runs(
        runs, reference={"pc": "backprop", "dtp": "backprop_tanh", "backprop_tanh": "backprop"}
    ).rows.set_index("learner")
    assert summary.loc["pc", "p_raw"] == pytest.approx(_welch(pc, arch["arch=mlp"]))
    assert summary.loc["pc", "reference"] == "backprop (arch=mlp)"
    assert summary.loc["dtp", "p_raw"] == pytest.approx(_welch(dtp, tanh))
    assert summary.loc["dtp", "reference"] == "backprop_tanh"
    text = render(summarize_runs(runs, reference={"dtp": "backprop_tanh"}), "text")
    assert "dtp against 'backprop_tanh' instead" in text


def test_per_learner_reference_key_is_validated_before_any_run() -> None:
    raw = {
        "tasks": ["digits"],
        "learners": {"backprop": {}, "backprop_tanh": {"learner": "backprop"}, "fa": {"reference": "backprop_tanh"}},
    }
    assert study_references(raw) == {"backprop": "backprop", "backprop_tanh": "backprop", "fa": "backprop_tanh"}
    assert expand("ok", raw, learner_registry(), task_registry()).runs
    for bad in ("backprop_tnh", "fa"):
        raw["learners"]["fa"]["reference"] = bad
        with pytest.raises(ConfigError, match=f"learners.fa.reference = '{bad}': must be another learner label"):
            expand("bad", raw, learner_registry(), task_registry())


def test_a_configuration_whose_runs_all_failed_still_gets_a_row() -> None:
    failed = pd.DataFrame(
        [{"learner": "dfa", "config": "", "task": "digits", "learner_name": "dfa", "budget": "5 ep"}] * 2
    )
    summary = summarize_runs(_runs("backprop", "backprop", [0.95, 0.96]), failed)
    line = next(line for line in render(summary, "text").splitlines() if line.startswith("dfa"))
    # n/a: every measure, p, diff, 4 times to target and reached
    assert line.split()[4] == "failed" and "0 (2 failed)" in line and line.count("n/a") == len(measures_shown()) + 8


def test_runs_stopped_by_different_limits_are_flagged() -> None:
    runs = pd.concat(
        [
            _runs("backprop", "backprop", [0.9, 0.91], "1e+10 FLOPs / 100 ep", "flops"),
            _runs("es", "es", [0.5, 0.52], "1e+10 FLOPs / 100 ep", "epochs"),
        ]
    )
    text = render(summarize_runs(runs), "markdown")
    assert "digits†" in text and "stopped by different limits (epochs, flops)" in text


def test_budget_rejects_bad_limits() -> None:
    with pytest.raises(ConfigError, match="flops = 0"):
        build(Budget, {"flops": 0}, "budget")
    with pytest.raises(ConfigError, match="samples = -5"):
        build(Budget, {"samples": -5}, "budget")


@pytest.mark.parametrize("limit, value", [("flops", 6e7), ("samples", 3000)])
def test_compute_budget_ends_the_run_at_the_limit(limit: str, value: float) -> None:
    raw = {
        "tasks": ["digits"],
        "model": {"hidden": [32]},
        "budget": {"epochs": 100, limit: value},
        "schedule": {"health_every": 10},
        "learners": {"backprop": {"lr": 0.003}},
    }
    spec = expand("budget", raw, learner_registry(), task_registry()).runs[0]
    result = run(spec, learner_registry(), task_registry(), torch.device("cpu"))
    rows = pd.DataFrame(result.rows)
    final = rows[(rows["epoch"] == rows["epoch"].max()) & (rows["split"] == "train")].set_index("metric")["value"]
    used = final["train_flops" if limit == "flops" else "train_samples"]
    per_step = final["train_flops" if limit == "flops" else "train_samples"] / result.summary["steps"]
    assert result.summary["stopped_by"] == limit and result.summary["epochs_completed"] < 100
    assert value <= used < value + 1.5 * per_step  # ends at the step that reaches the limit
    assert result.summary["test_accuracy"] > 0.5  # it trained (chance is 0.1)


@pytest.fixture(scope="module")
def unequal_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny_study(tmp_path_factory.mktemp("table"), TINY_STUDY)


def test_table_states_budgets_and_labels_unequal_study(unequal_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["table", str(unequal_study)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert any(line.startswith("backprop_long") and "3 ep" in line and "digits†" in line for line in lines)
    assert any(line.startswith("backprop ") and "2 ep" in line and "epochs" in line for line in lines)
    assert "† unequal budget on digits: runs had different budgets (2 ep; 3 ep)" in text
    csv = pd.read_csv(io.StringIO(render(summarize(RunTable.read(RunStore(unequal_study))), "csv")))
    assert csv["unequal_budget"].all() and set(csv["budget"]) == {"2 ep", "3 ep"}
    runs = per_run(RunTable.read(RunStore(unequal_study)).tidy()).sort_values("seed")
    acc = {label: runs.loc[runs["learner"] == label, "test_acc"].tolist() for label in ("backprop", "backprop_long")}
    for row in csv.itertuples():  # 95% t-intervals and Welch's p recomputed with scipy from the runs
        values = acc[row.learner]
        low, high = stats.t.interval(0.95, len(values) - 1, np.mean(values), stats.sem(values))
        assert (row.test_acc_low, row.test_acc_high) == (pytest.approx(max(0, low)), pytest.approx(min(1, high)))
    p = csv.set_index("learner")["p_vs_reference"]
    assert p["backprop_long"] == pytest.approx(_welch(acc["backprop_long"], acc["backprop"]), rel=1e-9)
    assert math.isnan(p["backprop"])


def test_table_reference_option_and_study_reference_key(
    unequal_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = per_run(RunTable.read(RunStore(unequal_study)).tidy())
    acc = {label: runs.loc[runs["learner"] == label, "test_acc"].tolist() for label in ("backprop", "backprop_long")}
    summary = summarize(RunTable.read(RunStore(unequal_study)), "backprop_long").rows.set_index("learner")
    assert summary.loc["backprop", "p_vs_reference"] == pytest.approx(_welch(acc["backprop"], acc["backprop_long"]))
    capsys.readouterr()
    assert main(["table", str(unequal_study), "--reference", "backprop_lng"]) == 2
    assert "--reference 'backprop_lng': no run in" in capsys.readouterr().err
    study = tmp_path / "ref.toml"  # an unknown reference label stops the study before any run
    study.write_text('reference = "backprop_lng"\n' + TINY_STUDY)
    assert main(["run", str(study), "--out", str(tmp_path / "out"), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert "reference = 'backprop_lng': not a learner label of this study; allowed: backprop, backprop_long" in err
    assert not (tmp_path / "out" / "runs").exists()
    raw = {
        "reference": "backprop_long",
        "tasks": ["digits"],
        "learners": {"backprop": {}, "backprop_long": {"learner": "backprop"}},
    }
    assert expand("ok", raw, learner_registry(), task_registry()).runs


@pytest.mark.timeout(1800)  # may install Debian's texlive-latex-recommended first (apt_tools.require)
def test_latex_table_compiles_with_booktabs_and_fits_the_page(unequal_study: Path, tmp_path: Path) -> None:
    """The default LaTeX table compiles and fits an article's text width as it is: no Overfull
    box in pdflatex's log (15 columns overflowed by 736 pt; long task names by 39 pt)."""
    summary = summarize(RunTable.read(RunStore(unequal_study)))
    # the longest names the built-in studies print (vanishing's configurations, japanese_vowels)
    summary.rows["config"] = "hidden=2x64, activation=sigmoid, batchnorm=False"
    summary.rows["task"] = "japanese_vowels"
    latex = render(summary, "latex")
    assert latex.isascii() and latex.startswith("\\begin{tabularx}{\\linewidth}") and "\\midrule" in latex
    assert "\\multicolumn{4}{@{}l}{\\textit{japanese\\_vowels" in latex  # rows grouped under their task
    header = next(line for line in latex.splitlines() if line.startswith("learner"))
    n_cols = header.count(" & ") + 1
    body = [line for line in latex.splitlines() if line.startswith("backprop")]  # both learners' rows
    assert len(body) == 2 and all(line.count(" & ") + 1 == n_cols for line in body)
    pdflatex = require("pdflatex", "texlive-latex-recommended")
    (tmp_path / "table.tex").write_text(latex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,tabularx}\n\\begin{document}\n"
        "\\begin{table}\\centering\n\\input{table.tex}\n\\end{table}\n\\end{document}\n"
    )
    proc = subprocess.run(
        [pdflatex, "-halt-on-error", "-interaction=nonstopmode", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    assert "Overfull \\hbox" not in (tmp_path / "doc.log").read_text(errors="replace")


@pytest.mark.parametrize("study", ["vanishing", "lr_sensitivity", "overfitting", "compute"])
def test_builtin_study_states_its_claim_and_validates(study: str) -> None:
    path = Path(__file__).resolve().parent.parent / "experiments" / "plan" / "studies" / f"{study}.toml"
    header = path.read_text().split("description =")[0]
    assert "Claim tested" in header and "Shrink for a test" in header
    runs = load_study(study, ["seeds=1"], learner_registry(), task_registry()).runs
    assert runs and len({r.learner for r in runs}) >= 2


def test_shrunken_vanishing_study_shows_the_vanishing_gradient(tmp_path: Path) -> None:
    sets = [
        "seeds=1",
        "budget.epochs=1",
        "schedule.health_every=4",
        "model.hidden=[[32, 32], [32, 32, 32, 32, 32, 32]]",
        'model.activation=["sigmoid", "relu"]',
    ]
    assert (
        main(["run", "vanishing", "--out", str(tmp_path), "--executor", "inline", *[f"--set={s}" for s in sets]]) == 0
    )
    runs = per_run(RunTable.read(RunStore(tmp_path)).tidy()).set_index(["learner", "activation", "batchnorm", "depth"])
    ratio = runs["grad_ratio"]
    # backprop through sigmoid layers: the first layer's gradient shrinks by orders of magnitude with depth
    assert ratio["backprop", "sigmoid", False, 6] < ratio["backprop", "sigmoid", False, 2] / 100
    # batch normalization keeps it within a factor of 10 of the last layer's
    assert 0.1 < ratio["backprop", "sigmoid", True, 6] < 10
    # dfa's error reaches every layer directly: its ratio does not collapse with depth
    assert ratio["dfa", "sigmoid", False, 6] > ratio["dfa", "sigmoid", False, 2] / 3


def test_studies_sharing_a_folder_must_name_one_reference(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write_study("a", {"learners": {"backprop": {}, "fa": {}}})
    assert reference_of(store) == {"backprop": "backprop", "fa": "backprop"}  # the default
    store.write_study("b", {"reference": "bp2", "learners": {"bp2": {"learner": "backprop"}, "fa": {}}})
    with pytest.raises(ConfigError, match=r"different references for 'fa' \(backprop, bp2\)"):
        reference_of(store)
