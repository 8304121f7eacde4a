"""The Python API: bpbench.run / load / Results, the same validation as the CLI, and imports that
stay light and work from a research repository with its own ``experiments`` and ``tasks``.
(``Results.plot`` and ``Results.report`` are what ``bpbench plot|report`` call: test_plots, test_report.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import bpbench
from bpbench.experiments.front.cli import main
from helpers import REPO

TINY = {
    "seeds": 2,
    "tasks": ["digits"],
    "model": {"hidden": [32]},
    "budget": {"epochs": 1},
    "learners": {"backprop": {"lr": [0.003, 0.01]}},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> bpbench.Results:
    return bpbench.run(TINY, out=tmp_path_factory.mktemp("api") / "out", executor="inline", progress=False)


def test_run_returns_results_one_summary_row_per_run(tiny: bpbench.Results) -> None:
    summary = tiny.summary
    assert list(summary.columns[:14]) == [
        "run_id",
        "label",
        "configuration",
        "learner",
        "task",
        "task_label",
        "seed",
        "phase",
        "status",
        "error",
        "test_accuracy",
        "train_seconds",
        "train_flops",
        "stopped_by",
    ]
    assert len(summary) == 4 and len(tiny.ran) == 4 and tiny.wall_seconds > 0
    assert set(summary["configuration"]) == {"lr=0.003", "lr=0.01"} and set(summary["seed"]) == {0, 1}
    assert (summary["status"] == "ok").all() and summary["error"].isna().all()
    assert (summary["test_accuracy"] > 0.5).all() and (summary["train_flops"] > 0).all()
    metas = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in tiny.out.glob("runs/*/meta.json")}
    for row in summary.itertuples():
        assert row.test_accuracy == metas[row.run_id]["measures"]["values"]["test_accuracy"]
    metrics = tiny.metrics
    assert set(metrics["run_id"]) == set(summary["run_id"])
    assert {
        "epoch",
        "split",
        "metric",
        "layer",
        "value",
        "label",
        "learner",
        "configuration",
        "task",
        "task_label",
        "seed",
    } <= set(metrics.columns)
    one = metrics.iloc[0]  # the same names as the summary, for the same things
    assert (one["label"], one["learner"], one["task"]) == ("backprop", "backprop", "digits")
    assert set(metrics["configuration"]) == set(summary["configuration"])


def test_table_is_the_cli_table_and_load_reads_the_folder(
    tiny: bpbench.Results, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("text", "csv"):
        assert main(["table", str(tiny.out), "--format", fmt]) == 0
        assert capsys.readouterr().out == tiny.table(fmt) + "\n"
    assert main(["table", str(tiny.out), "--reference", "backprop"]) == 0
    assert capsys.readouterr().out == tiny.table(reference="backprop") + "\n"
    with pytest.raises(
        bpbench.ConfigError, match=r"--reference 'bp': no run in .* has that learner label; allowed: backprop"
    ):
        tiny.table(reference="bp")
    loaded = bpbench.load(tiny.out)
    assert loaded.ran == () and loaded.summary.equals(tiny.summary) and loaded.table() == tiny.table()
    with pytest.raises(bpbench.ConfigError, match="has no runs/"):
        bpbench.load(tiny.out / "runs")


def test_rerun_skips_completed_runs_and_overrides_take_both_forms(tiny: bpbench.Results) -> None:
    again = bpbench.run(TINY, out=tiny.out, executor="inline", progress=False)
    assert again.ran == () and len(again.summary) == 4
    as_strings = bpbench.run(
        TINY,
        out=tiny.out,
        overrides=["seeds=[0, 1, 2]", "learners.backprop.lr=[0.003, 0.01]"],
        executor="inline",
        progress=False,
        extend=True,
    )  # another definition: a new seed (--extend keeps the recorded seeds: it never drops what the record holds)
    as_dict = bpbench.run(
        TINY,
        out=tiny.out,
        overrides={"seeds": [0, 1, 2], "learners.backprop.lr": [0.003, 0.01]},
        executor="inline",
        progress=False,
    )
    assert len(as_strings.ran) == 2 and as_dict.ran == ()  # the same runs: done by the first call
    assert len(as_dict.summary) == 6


@pytest.mark.parametrize(
    "kwargs, cli",
    [
        ({"overrides": {"budget.epochs": 0}}, ["--set", "budget.epochs=0"]),
        ({"overrides": ["learners.backprop.lr=-1"]}, ["--set", "learners.backprop.lr=-1"]),
        ({"device": "tpu"}, ["--device", "tpu"]),
        ({"executor": "nope"}, ["--executor", "nope"]),
        ({"overrides": ["budget.epochs"]}, ["--set", "budget.epochs"]),
    ],
)
def test_errors_are_the_cli_line(
    kwargs: dict, cli: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(bpbench.ConfigError) as info:
        bpbench.run("quick", out=tmp_path / "api", progress=False, **kwargs)
    assert main(["run", "quick", "--out", str(tmp_path / "cli"), *cli]) == 2
    assert capsys.readouterr().err == f"bpbench: error: {info.value}\n"
    assert not any(tmp_path.iterdir())  # nothing written before the error


def test_bad_study_and_count_arguments(tmp_path: Path) -> None:
    with pytest.raises(bpbench.ConfigError, match="unknown study 'quik'"):
        bpbench.run("quik", progress=False)
    with pytest.raises(bpbench.ConfigError, match=r"jobs = -1: expected an integer >= 0"):
        bpbench.run(TINY, jobs=-1, progress=False)
    with pytest.raises(bpbench.ConfigError, match="study = 3: expected a built-in study name"):
        bpbench.run(3, progress=False)  # type: ignore[arg-type]
    with pytest.raises(bpbench.ConfigError, match="overrides = 'seeds=1': expected a dict"):
        bpbench.run(TINY, overrides="seeds=1", progress=False)  # type: ignore[arg-type]


def test_failed_runs_are_in_the_summary_with_their_error(with_plugins: Path, tmp_path: Path) -> None:
    study = {**TINY, "seeds": 1, "tasks": ["digits", "mnist5k"], "learners": {"crashing": {"lr": 0.01}}}
    results = bpbench.run(study, out=tmp_path / "out", executor="inline", progress=False)
    rows = results.summary.set_index("task")
    assert rows.loc["digits", "status"] == "ok" and rows.loc["digits", "test_accuracy"] > 0.5
    assert rows.loc["mnist5k", "status"] == "failed" and pd.isna(rows.loc["mnist5k", "test_accuracy"])
    assert rows.loc["mnist5k", "error"] == "RuntimeError: deliberate crash on mnist5k"


def test_import_and_help_load_no_torch_or_pandas() -> None:
    code = (
        "import sys, bpbench; from bpbench.experiments.front.cli import parser; parser().format_help(); "
        "bpbench.__all__; print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"
    from bpbench.experiments.front.cli import TABLE_FORMATS
    from bpbench.experiments.report.render import FORMATS

    assert TABLE_FORMATS == FORMATS  # the CLI's copy (kept there so --help imports no pandas)


def test_runs_from_a_repository_with_its_own_experiments_and_tasks(tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "experiments" / "study.py").write_text('raise ImportError("the research repository\'s own module")\n')
    (tmp_path / "tasks.py").write_text("MINE = True\n")
    (tmp_path / "learners.py").write_text("MINE = True\n")
    code = textwrap.dedent(f"""
        import bpbench, experiments, tasks
        assert experiments.MINE and tasks.MINE
        results = bpbench.run({TINY!r}, out="out", overrides={{"seeds": 1}}, executor="inline", progress=False)
        print(results.summary["status"].tolist(), results.summary["test_accuracy"].min())
    """)
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    statuses, accuracy = proc.stdout.rsplit("] ", 1)
    assert statuses == "['ok', 'ok'" and float(accuracy) > 0.5


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_a_script_without_a_main_guard_runs_in_worker_processes(tmp_path: Path) -> None:
    """Workers are fresh interpreters that never import the caller's script: a script that
    calls bpbench.run at top level (no ``if __name__ == "__main__":``) runs its runs in worker
    processes, and its top-level code runs once (multiprocessing's spawn re-ran it per worker,
    and every run failed)."""
    script = tmp_path / "sweep.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, bpbench
        with open("top_level_ran", "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        results = bpbench.run({TINY!r}, out="out", jobs=2, threads=1, progress=False)
        print(results.summary["status"].tolist())
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['ok', 'ok', 'ok', 'ok']"
    assert len((tmp_path / "top_level_ran").read_text().split()) == 1


def test_readme_duckdb_example_groups_the_compacted_metrics_by_configuration(
    tiny: bpbench.Results, tmp_path: Path
) -> None:
    import shutil

    import duckdb

    from bpbench.experiments.store.compact import compact

    packed = tmp_path / "packed"
    shutil.copytree(tiny.out, packed)
    summary = tiny.summary  # lr=0.003 and lr=0.01 (and, after the re-run test, its one-lr override)
    assert compact(packed).moved == len(summary)
    readme = (REPO / "docs" / "results.md").read_text()  # the example the docs show
    query = readme.split("```sql\n", 1)[1].split("```", 1)[0].replace("DIR", str(packed))
    got = duckdb.sql(query).df()
    assert summary["configuration"].nunique() >= 2
    assert len(got) == 2 * summary["configuration"].nunique()  # each configuration x epochs 0, 1; never pooled
    final = got[got["epoch"] == 1].set_index("configuration")
    by_config = summary.groupby("configuration")["test_accuracy"]
    assert final["seeds"].to_dict() == by_config.size().to_dict()
    assert final["test_accuracy"].to_dict() == pytest.approx(by_config.mean().to_dict(), rel=1e-12)
