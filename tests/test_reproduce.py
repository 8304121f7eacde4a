"""``bpbench reproduce``: a re-run compared with the recorded runs, row by row (front/reproduce.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.report.reproduction import compare_runs
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

TINY = """
description = "backprop and fa on digits, tiny"
seeds = 2
tasks = ["digits"]
[model]
hidden = [16]
[budget]
epochs = 1
[schedule]
health_every = 5
[verdict]
margin = 0.05
[learners.backprop]
lr = 0.003
[learners.fa]
lr = 0.003
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reproduce")
    (root / "tiny.toml").write_text(TINY)
    out = root / "out"
    assert main(["run", str(root / "tiny.toml"), "--out", str(out), "--executor", "inline"]) == 0
    return out


def test_rerun_here_is_bit_identical_row_by_row(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["reproduce", str(recorded), "--here"]) == 0
    text = capsys.readouterr().out
    assert "re-run at the current code (4 runs) against 4 recorded runs" in text
    rows = [line for line in text.splitlines() if line.startswith(("backprop", "fa "))]
    assert len(rows) == 2 and all("2/2" in row and row.rstrip().endswith("identical") for row in rows), text
    assert "4 of 4 re-run runs bit-identical" in text and "±0.05" in text


def test_a_committed_folder_reproduces_from_its_runs_csv(recorded: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A reference folder (metadata.json + runs.csv, no runs/), re-run with one seed: the seed is
    bit-identical, and one seed a side cannot show equivalence (n/a, not a pass)."""
    folder = tmp_path / "committed"
    folder.mkdir()
    runs = RunTable.read(RunStore(recorded)).verdict().runs
    runs.to_csv(folder / "runs.csv", index=False)
    study = RunStore(recorded).studies()[0]
    (folder / "metadata.json").write_text(json.dumps({"study": "tiny", "study_table": study["study"], "git": []}))
    capsys.readouterr()
    assert main(["reproduce", str(folder), "--here", "--set", "seeds=1"]) == 0
    text = capsys.readouterr().out
    assert "(2 runs) against 4 recorded runs" in text and "1/1" in text
    assert main(["reproduce", str(folder)]) == 2  # no recorded commit and no --here: one clear line
    assert "names no single commit" in capsys.readouterr().err


def test_rerun_at_the_recorded_commit_uses_a_temporary_worktree(recorded: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    folder = tmp_path / "at_head"
    folder.mkdir()
    runs = RunTable.read(RunStore(recorded)).verdict().runs
    runs.to_csv(folder / "runs.csv", index=False)
    study = RunStore(recorded).studies()[0]["study"]
    (folder / "metadata.json").write_text(
        json.dumps({"study": "tiny", "study_table": study, "git": [{"commit": head}]})
    )
    capsys.readouterr()
    assert main(["reproduce", str(folder), "--set", "seeds=1"]) == 0
    text = capsys.readouterr().out
    assert f"re-run at commit {head}" in text and "1/1" in text
    worktrees = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout
    assert "bpbench-reproduce-" not in worktrees  # the temporary worktree is removed


def test_equivalent_and_not_shown_equivalent_rows() -> None:
    rec = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e", "f"],
            "learner": ["x"] * 3 + ["y"] * 3,
            "config": "",
            "task": "t",
            "test_acc": [0.90, 0.91, 0.92, 0.90, 0.91, 0.92],
        }
    )
    rerun = rec.assign(run_id=[f"{r}2" for r in rec["run_id"]], test_acc=[0.905, 0.912, 0.915, 0.80, 0.81, 0.82])
    out = compare_runs(rec, rerun, 0.05).set_index("learner")
    assert out.loc["x", "verdict"] == "equivalent ±0.05" and out.loc["x", "identical"] == 0
    assert out.loc["y", "verdict"] == "not shown equivalent"


def test_the_python_api_returns_each_rows_verdict(recorded: Path) -> None:
    import bpbench

    rows = bpbench.load(recorded).comparisons().set_index("learner")
    assert rows.loc["backprop", "verdict"] == "ref"
    assert rows.loc["fa", "verdict"].split(":")[0] in ("better", "worse", "equivalent ±0.05", "inconclusive")
    assert {"tost_p", "p_vs_reference", "diff_low", "diff_high", "seeds_to_decide"} <= set(rows.columns)


def test_a_committed_runs_csv_under_public_names_reads_back() -> None:
    """results/quick's runs.csv is written under the public names (label, configuration, test_accuracy):
    read back under the comparison's own, every configuration "" (not NaN), the commit its runs name."""
    from bpbench.experiments.front.reproduce import recorded
    from helpers import REPO

    name, raw, runs, commit = recorded(REPO / "results" / "quick")
    assert name == "quick" and raw["seeds"] == 5 and len(runs) == 125
    assert runs["config"].eq("").all() and runs["test_acc"].between(0.0, 1.0).all()
    assert set(runs["learner"]) >= {"backprop", "fa", "snn_dfa"} and commit is not None


def test_bit_identical_falls_back_to_the_seed_when_run_ids_changed() -> None:
    recorded = pd.DataFrame(
        {
            "run_id": ["old0", "old1"],
            "learner": "fa",
            "config": "",
            "task": "digits",
            "seed": [0, 1],
            "test_acc": [0.9, 0.92],
        }
    )
    rerun = recorded.assign(run_id=["new0", "new1"], test_acc=[0.9, 0.93])  # seed 1 differs
    row = compare_runs(recorded, rerun, 0.01).iloc[0]
    assert row["identical"] == 1 and row["seeds_rerun"] == 2
