"""A study folder remembers its definition (issue 22, points 1-2, 5, 7): any TOML label works in
every command; a changed study into a finished folder stops (or --extend adds runs only); runs
that differ beyond the seed are never pooled; bad budgets and deep nesting are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.report.summary import summarize
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from folder_tools import fake_run, spec

TINY = 'tasks = ["digits"]\nseeds = 1\n[model]\nhidden = [8]\n[budget]\nepochs = 1\n[learners.backprop]\n'
CJK = "漢字" * 20  # 40 CJK characters: 120 bytes of UTF-8, 360 percent-encoded


def test_any_toml_label_runs_tables_plots_reports_and_compacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "x/../../../../victim3/pwn"
    labels = ["fa lr/2", hostile, CJK]
    study = tmp_path / "labels.toml"
    study.write_text(
        TINY.replace("[learners.backprop]\n", "")
        + "".join(f'[learners.{json.dumps(label, ensure_ascii=False)}]\nlearner = "backprop"\n' for label in labels)
    )
    out = tmp_path / "out"
    before = set(tmp_path.rglob("*"))
    assert main(["run", str(study), "--out", str(out), "--executor", "inline"]) == 0
    assert main(["plot", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert main(["compact", str(out)]) == 0
    assert main(["table", str(out)]) == 0
    table = capsys.readouterr().out.split("compacted")[-1]
    assert all(label in table for label in labels)
    written = {p for p in set(tmp_path.rglob("*")) - before if not p.is_relative_to(out)}
    assert written == set()  # nothing outside the results folder
    assert not any((folder / "victim3").exists() for folder in (out / "figures").parents)
    assert not list((out / "dataset").glob(".staging-*"))
    figures = [p.name for p in (out / "figures").iterdir()]
    assert any(name.startswith("grad_norms_x_.._.._.._.._victim3_pwn-") for name in figures)
    assert all(len(name.encode()) <= 100 for name in figures)


def _run(study: Path, out: Path, *sets: str, extend: bool = False) -> int:
    args = ["run", str(study), "--out", str(out), "--executor", "inline"]
    return main(args + [f"--set={s}" for s in sets] + (["--extend"] if extend else []))


def test_changed_study_into_a_finished_folder_stops_or_extends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study, out = tmp_path / "s.toml", tmp_path / "out"
    study.write_text(TINY)
    assert _run(study, out) == 0
    assert _run(study, out) == 0  # the same study again: a no-op
    capsys.readouterr()
    assert _run(study, out, "budget.epochs=2") == 2
    err = capsys.readouterr().err
    assert "budget.epochs: 1 recorded here, 2 now" in err and err.count("\n") == 1
    assert _run(study, out, "budget.epochs=2", "seeds=2", extend=True) == 2  # changes recorded runs
    assert "--extend may only add grid points or seeds" in capsys.readouterr().err
    assert _run(study, out, "seeds=2", extend=True) == 0  # a new seed only
    assert len(RunStore(out).metas()) == 2
    assert _run(study, out, "seeds=2") == 0  # the extended definition is now the record
    assert _run(study, out, "seeds=2", "learners.backprop.lr=[0.001, 0.1]", extend=True) == 0  # new grid points
    assert len(RunStore(out).metas()) == 4  # lr=0.001 is backprop's default: those two runs were there


def test_runs_that_differ_beyond_the_seed_are_separate_rows(tmp_path: Path) -> None:
    for seed in range(3):
        fake_run(tmp_path, spec(seed=seed, epochs=20), accuracy=0.9)
    fake_run(tmp_path, spec(seed=0, epochs=5), accuracy=0.5)
    summary = summarize(RunTable.read(RunStore(tmp_path))).rows
    rows = dict(zip(summary["config"], summary["seeds"]))
    assert rows == {"budget.epochs=20": 3, "budget.epochs=5": 1}
    assert dict(zip(summary["config"], summary["test_acc_mean"])) == pytest.approx(
        {"budget.epochs=20": 0.9, "budget.epochs=5": 0.5}
    )


def test_dry_run_prints_the_runs_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, out = tmp_path / "s.toml", tmp_path / "out"
    study.write_text(TINY.replace("seeds = 1", "seeds = 3"))
    assert main(["run", str(study), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"3 run(s) into {out}: 3 to run, 0 done") and printed.count("to run") == 4
    assert not out.exists()


@pytest.mark.parametrize(
    "setting",
    [
        "budget.max_seconds=nan",
        "budget.flops=nan",
        "budget.samples=inf",
        "budget.max_seconds=inf",
        "schedule.timeout=nan",
        "schedule.timeout=-1",
    ],
)
def test_non_finite_budgets_are_refused(tmp_path: Path, setting: str, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "s.toml"
    study.write_text(TINY)
    assert _run(study, tmp_path / "out", setting) == 2
    err = capsys.readouterr().err
    assert err.startswith("bpbench: error:") and err.count("\n") == 1 and setting.split("=")[0].split(".")[1] in err
    assert not (tmp_path / "out").exists()


def test_deeply_nested_toml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "deep.toml"
    study.write_text("a = " + "[" * 200_000 + "]" * 200_000 + "\n")
    assert main(["run", str(study), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and err.count("\n") == 1


def test_read_only_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores permissions: a read-only folder cannot be made here")
    study, out = tmp_path / "s.toml", tmp_path / "out"
    study.write_text(TINY)
    out.mkdir()
    out.chmod(0o555)
    try:
        assert _run(study, out) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith("bpbench: error:") and err.count("\n") == 1 and "Permission denied" in err
