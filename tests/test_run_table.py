"""The run table (issue 28): every view of a tuned folder reads exactly its final runs (the trial
views exactly its trials), under one set of names; folders of the previous layout still load."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import bpbench
from bpbench.experiments.front.cli import main
from bpbench.experiments.report import figure_data, ranking, score_table, tuning
from bpbench.experiments.report import summary as summary_module
from bpbench.experiments.store import records
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable

OLD_LAYOUT = Path(__file__).parent / "layout_0ad190e"  # 6 run folders as bpbench wrote them at 0ad190e
LR = "{ low = 1e-3, high = 3e-2, log = true }"
TUNED = (
    'tasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 2\n'
    '[tuning]\ntrials = 3\nsampler = "qmc"\nfinal_seeds = 2\n'
    + "".join(f"[learners.{name}]\n[learners.{name}.search]\nlr = {LR}\n" for name in ("backprop", "fa"))
)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> bpbench.Results:
    folder = tmp_path_factory.mktemp("tuned")
    (folder / "t.toml").write_text(TUNED)
    return bpbench.run(folder / "t.toml", out=folder / "out", executor="inline", progress=False)


def _ids_by_phase(out: Path) -> dict[str, set[str]]:
    phases: dict[str, set[str]] = {"tuning": set(), "final": set()}
    for path in (out / "runs").glob("*/meta.json"):
        meta = json.loads(path.read_text())
        phases[meta["spec"]["tuning"]["phase"]].add(meta["run_id"])
    return phases


def _spy(monkeypatch: pytest.MonkeyPatch, seen: dict[str, list[set[str]]], module: Any, name: str) -> None:
    """Record the run ids of the ``runs`` frame (first argument) of every call of ``module.name``."""
    inner: Callable[..., Any] = getattr(module, name)

    def spy(runs: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        seen.setdefault(name, []).append(set(runs["run_id"]))
        return inner(runs, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def test_every_verdict_view_of_a_tuned_folder_reads_exactly_its_final_runs(
    tuned: bpbench.Results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _ids_by_phase(tuned.out)
    assert len(ids["tuning"]) == 6 and len(ids["final"]) == 4
    seen: dict[str, list[set[str]]] = {}
    _spy(monkeypatch, seen, summary_module, "summarize_runs")  # the summary table
    _spy(monkeypatch, seen, tuning, "summarize_runs")
    _spy(monkeypatch, seen, score_table, "score_runs")  # scores and ranks
    for name in ("accuracy_matrix", "iqm_scores", "times", "best_configs"):  # ranks, CD, profile, IQM, curves
        _spy(monkeypatch, seen, ranking, name)
    read_rows: list[set[str]] = []
    metrics = RunStore.metrics

    def rows_spy(self: RunStore, run_ids: list[str] | None = None, *args: Any) -> pd.DataFrame:
        read_rows.append(set(run_ids or []))
        return metrics(self, run_ids, *args)

    monkeypatch.setattr(RunStore, "metrics", rows_spy)
    text = tuned.table()
    tuned.score()
    written, skipped = tuned.plot(tmp_path / "figures")
    tuned.report(tmp_path / "report.html")
    drawn = {p.stem for p in written}
    for name in (
        "curves_epochs",
        "accuracy_vs_flops",
        "val_vs_flops_target",
        "performance_profile",
        "critical_difference",
    ):
        assert name in drawn or name in skipped, (name, sorted(drawn), skipped)
    assert {"summarize_runs", "score_runs", "accuracy_matrix", "iqm_scores", "times", "best_configs"} <= set(seen)
    seen.pop("default_summary", None)
    for name, calls in seen.items():
        for run_ids in calls:
            assert run_ids <= ids["final"] and run_ids, (name, len(run_ids & ids["tuning"]))
    assert all(calls[0] == ids["final"] for name, calls in seen.items() if name != "best_configs")
    assert read_rows and all(r <= ids["final"] for r in read_rows)  # the figures' metric rows: finals only
    # the trial views read the trials only
    trials = tuned.tuning
    assert set(trials["run_id"]) == ids["tuning"] and trials["chosen"].sum() == 2
    verdict = tuned.run_table().verdict()
    assert set(verdict.runs["run_id"]) == ids["final"] and set(verdict.curves()["run_id"]) == ids["final"]
    # time to target shows in the tuned summary (backprop sets the targets: it reaches them)
    rows = tuning.tuned_summary(tuned.run_table(), "backprop").rows.set_index("learner")
    assert rows.loc["backprop", "ttt_n"] == 2 and rows.loc["backprop", "reached"] >= 1
    assert not math.isnan(rows.loc["backprop", "ttt_epochs_median"])
    assert "Time to target" in text and "epochs to target" in text


def test_summary_names_each_run_by_phase_and_public_names(tuned: bpbench.Results) -> None:
    frame = tuned.summary
    assert frame["phase"].value_counts().to_dict() == {"trial": 6, "final": 4}
    assert {"test_accuracy", "train_flops", "ttt_flops", "label", "task_label"} <= set(frame.columns)
    assert not {"test_acc", "flops", "config", "learner_name"} & set(frame.columns)
    assert frame.columns.is_unique


def test_columns_accept_every_column_the_tuned_table_shows(tuned: bpbench.Results, capsys: Any) -> None:
    capsys.readouterr()
    keys = "label,task_label,seeds,sampler,robust,test_accuracy,train_flops,ttt_epochs,reached"
    assert main(["table", str(tuned.out), "--columns", keys]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for word in ("sampler", "robust", "test acc", "GFLOPs", "epochs to target", "reached"):
        assert word in header, (word, header)
    assert "Peak MiB" not in out and "Alignment" not in out  # the note describes only the columns shown
    assert main(["table", str(tuned.out), "--columns", "test_acc"]) == 2
    assert "--columns 'test_acc': allowed: label, task_label" in capsys.readouterr().err


def test_a_folder_of_the_previous_layout_loads(tmp_path: Path) -> None:
    """A copy of run folders written at 0ad190e (measures record version 2, test accuracy, train seconds,
    FLOPs and peak memory repeated in meta.json's summary) gives the record's values, each once."""
    folder = shutil.copytree(OLD_LAYOUT, tmp_path / "old")
    metas = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("runs/*/meta.json")}
    assert {m["measures"]["version"] for m in metas.values()} == {2}
    assert all("test_accuracy" in m["summary"] for m in metas.values())
    results = bpbench.load(folder)
    shown = results.summary.set_index("run_id")
    assert len(shown) == 6 and shown.columns.is_unique and (shown["phase"] == "run").all()
    for run_id, meta in metas.items():
        stored = meta["measures"]["values"]
        assert shown.loc[run_id, "test_accuracy"] == stored["test_accuracy"]
        assert shown.loc[run_id, "train_flops"] == stored["train_flops"]
        assert shown.loc[run_id, "epochs_completed"] == meta["summary"]["epochs_completed"]
    # the record's values are the ones the run's metric rows reduce to
    runs = RunTable.read(RunStore(folder)).runs.set_index("run_id")
    recomputed = records.measures(RunStore(folder).metrics())
    pd.testing.assert_series_equal(runs["test_acc"], recomputed["test_acc"], check_names=False)
    text = results.table(columns=["label", "test_accuracy", "p"])
    assert "backprop" in text and "fa" in text and "0.97" in text
    assert "backprop" in results.score()  # the score table renders on the old layout


def test_a_run_written_now_stores_each_measure_once(tuned: bpbench.Results) -> None:
    meta = json.loads(next((tuned.out / "runs").glob("*/meta.json")).read_text())
    assert meta["measures"]["version"] == records.VERSION
    assert not set(records.columns()) & set(meta["summary"])  # not repeated in the summary
    assert "stopped_by" in meta["summary"] and "test_accuracy" in meta["measures"]["values"]
    figure = figure_data.FigureData.from_table(tuned.run_table())
    assert set(figure.runs["run_id"]) == _ids_by_phase(tuned.out)["final"]
