"""Results at sweep scale (correctness only; timings are in benchmarks/results_scale.py): the table
gives the same numbers from each run's stored measures, from its metric rows (folders written
before meta.json held measures), from the compacted dataset and from a mix while runs are
added; compaction never loses or duplicates a run; a corrupt run file is named and skipped."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

import bpbench
from bpbench.experiments.report.figures import FIGURE_METRICS
from bpbench.experiments.report.render import render
from bpbench.experiments.report.scoring import curves_from_tidy, first_reached, targets_for
from bpbench.experiments.report.summary import per_run, reference_of, summarize, summarize_runs
from bpbench.experiments.store import records
from bpbench.experiments.store.claims import Claims
from bpbench.experiments.store.compact import compact
from bpbench.experiments.store.dataset import ResultsWarning
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from helpers import bpbench as bpbench_cli
from helpers import run_tiny_study

STUDY = """
description = "scale tests: backprop and fa on digits, 3 seeds"
seeds = 3
tasks = ["digits"]
[model]
hidden = [16]
[budget]
epochs = 2
[schedule]
health_every = 5
[learners.backprop]
lr = 0.003
[learners.fa]
lr = 0.003
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny_study(tmp_path_factory.mktemp("scale"), STUDY)


def table_csv(root: Path) -> str:
    return render(summarize(RunTable.read(RunStore(root))), "csv")


def from_metric_rows(root: Path) -> str:
    """The table as computed before measures were stored: from every metric row of every run
    (time to target too: from the tidy rows, not through DuckDB)."""
    store = RunStore(root)
    runs = per_run(RunTable.read(store).tidy())
    targets, _ = targets_for(runs, {}, "backprop")
    runs = runs.merge(first_reached(curves_from_tidy(RunTable.read(store).tidy()), targets), on="run_id", how="left")
    return render(summarize_runs(runs, None, reference_of(store)), "csv")


def copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def strip_measures(root: Path) -> None:
    """Make ``root`` a folder written before meta.json held each run's measures."""
    for path in root.glob("runs/*/meta.json"):
        meta = json.loads(path.read_text())
        meta.pop("measures")
        path.write_text(json.dumps(meta))


def compacted_ids(root: Path) -> list[str]:
    return sorted(pd.read_parquet(root / "dataset" / "runs", columns=["run_id"])["run_id"])


def test_same_numbers_from_measures_metric_rows_and_dataset(folder: Path, tmp_path: Path) -> None:
    metas = RunStore(folder).metas()
    assert len(metas) == 6 and all(m["measures"]["version"] == records.VERSION for m in metas)
    reference = from_metric_rows(folder)
    assert "backprop" in reference and "fa" in reference
    assert table_csv(folder) == reference  # the stored measures
    old = copy(folder, tmp_path / "old")
    strip_measures(old)
    assert table_csv(old) == reference  # an old folder: measures from the metric rows, run by run
    packed = copy(folder, tmp_path / "packed")
    assert compact(packed).moved == 6 and not list((packed / "runs").iterdir())
    assert table_csv(packed) == reference and from_metric_rows(packed) == reference
    compact(old)  # old runs get their measures computed as they are compacted
    assert table_csv(old) == reference
    # pandas reads the dataset directly: one row per run with its partitions and final measures,
    # named as Results.summary names them (one schema: store/describe.py)
    runs = pd.read_parquet(packed / "dataset" / "runs")
    assert sorted(runs["run_id"]) == sorted(m["run_id"] for m in metas)
    assert set(runs["study"]) == {"tiny"} and set(runs["task_label"]) == {"digits"} and set(runs["task"]) == {"digits"}
    assert set(runs["label"]) == {"backprop", "fa"} and set(runs["learner"]) == {"backprop", "fa"}
    summary = bpbench.load(folder).summary.set_index("run_id")
    shared = {"label", "learner", "configuration", "task", "task_label", "seed", "test_accuracy", "train_flops"}
    assert shared <= set(runs.columns) and shared <= set(summary.columns) | {"label"}
    assert (runs.set_index("run_id")["test_accuracy"] == summary.loc[runs["run_id"], "test_accuracy"]).all()
    rows = pd.read_parquet(packed / "dataset" / "metrics")
    assert len(rows) == len(RunStore(folder).metrics()) and set(rows["configuration"]) == {""}


def test_load_plot_data_and_resume_read_the_dataset(folder: Path, tmp_path: Path) -> None:
    packed = copy(folder, tmp_path / "packed")
    compact(packed)
    before, after = bpbench.load(folder), bpbench.load(packed)
    cols = ["run_id", "status", "test_accuracy", "train_flops"]
    pd.testing.assert_frame_equal(before.summary[cols], after.summary[cols])
    key = ["run_id", "epoch", "step", "split", "metric", "layer"]
    pd.testing.assert_frame_equal(
        before.metrics.sort_values(key, ignore_index=True), after.metrics.sort_values(key, ignore_index=True)
    )
    figures = RunTable.read(RunStore(packed)).tidy(FIGURE_METRICS)
    assert set(figures["metric"]) <= set(FIGURE_METRICS) and "loss" not in set(figures["metric"])
    measured = RunTable.read(RunStore(packed)).runs.set_index("run_id")
    from_rows = per_run(figures).set_index("run_id")  # the figures' per-run numbers are the table's
    pd.testing.assert_frame_equal(from_rows[list(records.NAMES)], measured.loc[from_rows.index, list(records.NAMES)])
    again = bpbench.run(folder.parent / "tiny.toml", out=packed, executor="inline", progress=False)
    assert again.ran == ()  # compacted runs count as complete: a resumed study runs nothing again


def test_compaction_while_runs_are_added_never_loses_or_duplicates(folder: Path, tmp_path: Path) -> None:
    reference = table_csv(folder)
    root = copy(folder, tmp_path / "live")
    store = RunStore(root)
    parked = tmp_path / "parked"  # runs "not written yet": added while compactions go on
    parked.mkdir()
    ids = sorted(p.name for p in (root / "runs").iterdir())
    for run_id in ids[3:]:
        shutil.move(root / "runs" / run_id, parked / run_id)
    held = Claims(root / "claims")
    assert held.acquire(ids[0])  # a live driver is running this one again: left in its folder
    first = compact(root)
    assert first.moved == 2 and list(first.left) == [ids[0]]
    held.close()
    stop = threading.Event()

    def writer() -> None:  # a driver storing the other runs, through the store, during compactions
        for run_id in ids[3:]:
            meta = json.loads((parked / run_id / "meta.json").read_text())
            rows = pd.read_parquet(parked / run_id / "metrics.parquet").to_dict("records")
            store.write(run_id, rows, meta)
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        compact(root)
        seen = [m["run_id"] for m in store.iter_metas()]
        assert len(seen) == len(set(seen))  # never twice, at any moment
    thread.join()
    assert table_csv(root) == reference  # a mix of folders and dataset
    compact(root)
    assert compacted_ids(root) == ids and not list((root / "runs").iterdir())
    assert table_csv(root) == reference


def test_a_failed_run_re_run_after_compaction_supersedes_its_compacted_copy(folder: Path, tmp_path: Path) -> None:
    reference = table_csv(folder)
    root = copy(folder, tmp_path / "rerun")
    store = RunStore(root)
    run_id = sorted(p.name for p in (root / "runs").iterdir())[0]
    good = json.loads((root / "runs" / run_id / "meta.json").read_text())
    rows = pd.read_parquet(root / "runs" / run_id / "metrics.parquet").to_dict("records")
    store.write(
        run_id,
        [],
        {
            **{k: v for k, v in good.items() if k not in ("summary", "measures")},
            "status": "failed",
            "error": "RuntimeError: first attempt",
            "end_time": "2000-01-01",
        },
    )
    compact(root)
    assert store.status(run_id) == "failed"
    assert "(1 failed)" in render(summarize(RunTable.read(store)), "text")
    store.write(run_id, rows, good)  # the resumed study ran it again, after the compaction
    assert store.status(run_id) == "ok" and table_csv(root) == reference
    compact(root)
    assert compacted_ids(root).count(run_id) == 1 and table_csv(root) == reference
    # a compaction that stopped before deleting its folders: the folder is dropped, not added twice
    shutil.copytree(folder / "runs" / run_id, root / "runs" / run_id)
    done = compact(root)
    assert (done.moved, done.already) == (0, 1) and compacted_ids(root).count(run_id) == 1


def test_corrupt_or_half_written_run_files_are_named_and_skipped(folder: Path, tmp_path: Path) -> None:
    root = copy(folder, tmp_path / "corrupt")
    runs = per_run(RunTable.read(RunStore(folder)).tidy())
    victim = runs[runs["learner"] == "fa"]["run_id"].iloc[0]
    meta = root / "runs" / victim / "meta.json"
    meta.write_text(meta.read_text()[:200])  # half-written (copied while being written, say)
    with pytest.warns(ResultsWarning, match=f"skipped run {victim}: unreadable .*meta.json"):
        summary = summarize(RunTable.read(RunStore(root))).rows.set_index("learner")
    rest = runs[(runs["learner"] == "fa") & (runs["run_id"] != victim)]["test_acc"]
    assert summary.loc["fa", "seeds"] == 2 and summary.loc["fa", "test_acc_mean"] == pytest.approx(rest.mean())
    proc = bpbench_cli("table", str(root))
    assert proc.returncode == 0 and f"bpbench: warning: skipped run {victim}" in proc.stderr
    # an old-style run (no measures in meta) whose metric rows are corrupt: named and skipped too
    old = copy(folder, tmp_path / "old")
    strip_measures(old)
    (old / "runs" / victim / "metrics.parquet").write_bytes(b"PAR1 not really")
    with pytest.warns(ResultsWarning, match=f"skipped run {victim}"):
        summary = summarize(RunTable.read(RunStore(old))).rows.set_index("learner")
    assert summary.loc["fa", "seeds"] == 2 and summary.loc["fa", "test_acc_mean"] == pytest.approx(rest.mean())
    # a corrupt part file of the dataset is named, and its runs are left out (never a crash)
    packed = copy(folder, tmp_path / "packed")
    compact(packed)
    part = next((packed / "dataset" / "runs").glob("*/*/label=fa/*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    with pytest.warns(ResultsWarning, match="unreadable part file"):
        summary = summarize(RunTable.read(RunStore(packed))).rows
    assert list(summary["learner"]) == ["backprop"]


def test_list_answers_from_its_cache_only_while_nothing_changed(with_plugins: Path) -> None:
    first = bpbench_cli("list", check=True).stdout
    line = next(ln for ln in first.splitlines() if "needs_missing_dep" in ln)
    assert "unavailable: ModuleNotFoundError" in line
    assert bpbench_cli("list", check=True).stdout == first  # from the cache
    module = with_plugins / "bpbench_missing_dependency_xyz.py"
    module.write_text("from bpbench.learners.backprop import Backprop as Learner\n")
    try:  # the missing module appears on the path: the cached answer is stale and not used
        line = next(ln for ln in bpbench_cli("list", check=True).stdout.splitlines() if "needs_missing_dep" in ln)
        assert line.rstrip().endswith("available") and "unavailable" not in line
        module.write_text("import bpbench_another_missing_module_xyz\n")  # edited: broken again
        line = next(ln for ln in bpbench_cli("list", check=True).stdout.splitlines() if "needs_missing_dep" in ln)
        assert "unavailable: ModuleNotFoundError: No module named 'bpbench_another_missing_module_xyz'" in line
    finally:
        module.unlink()
