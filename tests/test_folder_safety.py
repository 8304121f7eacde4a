"""A received results folder is a boundary (issue 22, points 1, 2 and 4): hostile run ids, symlinks
and malformed files are skipped with one warning naming them; nothing outside the folder is read,
written or deleted; files are readable by the group under umask 022."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.store.run_store import RunStore
from folder_tools import edit_meta, fake_run, spec


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the results folder that must survive every command."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "received"
    for seed in (0, 1):
        fake_run(root, spec(seed=seed))
    return root


def test_run_id_naming_a_path_is_skipped_and_nothing_outside_is_touched(
    folder: Path, victim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = {fake_run(folder, spec(seed=2)): str(victim), fake_run(folder, spec(seed=3)): "../../victim"}
    for run_id, name in hostile.items():
        edit_meta(folder, run_id, lambda m, name=name: m.update(run_id=name))
    assert main(["table", str(folder)]) == 0
    assert main(["compact", str(folder)]) == 0
    err = capsys.readouterr().err
    assert (victim / "precious.txt").read_text() == "keep me"
    for run_id in hostile:
        assert f"skipped run {run_id}" in err and "is not a run id" in err
        assert (folder / "runs" / run_id / "meta.json").exists()  # left where it was, not moved or deleted
    assert main(["table", str(folder)]) == 0
    assert "seeds" in capsys.readouterr().out


def test_run_id_of_another_spec_is_refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = spec(seed=1).run_id
    run_id = fake_run(folder, spec(seed=5))
    edit_meta(folder, run_id, lambda m: m.update(run_id=other))
    RunStore(folder).metas()
    assert main(["table", str(folder)]) == 0
    assert "differs from its folder's name" in capsys.readouterr().err


def test_symlinked_report_and_figures_are_never_written_through(
    folder: Path, victim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "report.html").symlink_to(victim / "precious.txt")
    assert main(["report", str(folder)]) == 0
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (folder / "report.html").is_symlink() and "<html" in (folder / "report.html").read_text()
    (folder / "figures").symlink_to(victim, target_is_directory=True)
    assert main(["plot", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "figures: it is a symbolic link" in err and err.count("\n") == 1
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


def test_symlinked_run_folder_is_skipped_and_never_written(
    tmp_path: Path, victim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "s.toml"
    study.write_text('tasks = ["digits"]\n[model]\nhidden = [8]\n[budget]\nepochs = 1\n[learners.backprop]\n')
    from bpbench.experiments.front.api import plan_runs

    out = tmp_path / "out"
    (_, [(run, _)]) = plan_runs(str(study), out=out)
    (out / "runs").mkdir(parents=True)
    (out / "runs" / run.run_id).symlink_to(victim, target_is_directory=True)
    assert main(["run", str(study), "--out", str(out), "--executor", "inline"]) == 2
    err = capsys.readouterr().err
    assert f"runs/{run.run_id} is a symbolic link" in err
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    fake_run(out, spec())
    assert main(["table", str(out)]) == 0
    assert f"skipped {out / 'runs' / run.run_id}: not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["no model", "integer label", "huge seed", "not json", "a list"])
def test_one_malformed_meta_is_one_warning(folder: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = fake_run(folder, spec(seed=7))
    path = folder / "runs" / run_id / "meta.json"
    meta = json.loads(path.read_text())
    if damage == "no model":
        del meta["spec"]["model"]
    elif damage == "integer label":
        meta["spec"]["label"] = 7
    text = json.dumps(meta)
    text = {
        "huge seed": text.replace('"seed_index": 7', '"seed_index": ' + "9" * 5000),
        "not json": "\x00\xff",
        "a list": "[1, 2]",
    }.get(damage, text)
    path.write_bytes(text.encode("utf-8", "surrogateescape") if damage != "not json" else b"\x00\xff")
    for command in (["table", str(folder)], ["compact", str(folder)], ["table", str(folder)]):
        assert main(command) == 0, command
    captured = capsys.readouterr()
    assert f"skipped run {run_id}" in captured.err and str(path) in captured.err
    assert "Traceback" not in captured.err and "seeds" in captured.out


def test_bad_study_record_and_claim_files_are_warnings(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "study-bad.json").write_text("[1, 2]")
    (folder / "study-worse.json").write_bytes(b"\x00\xff")
    claims = folder / "claims"
    ids = sorted(p.name for p in (folder / "runs").iterdir())
    for name, content in zip(ids, (b"\x00\xff", b"[1,2]")):
        (claims / name).mkdir(parents=True)
        (claims / name / "0").write_bytes(content)
        os.utime(claims / name / "0", (1, 1))  # stale: taken over by the next claimant
    assert main(["compact", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "2 run(s) moved" in out
    assert main(["table", str(folder)]) == 0
    err += capsys.readouterr().err
    assert f"skipped {folder / 'study-bad.json'}" in err and f"skipped {folder / 'study-worse.json'}" in err
    assert f"claim file {claims / ids[0] / '0'} is unreadable" in err
    assert f"claim file {claims / ids[1] / '0'} holds a list" in err
    assert not claims.exists() or not list(claims.iterdir())  # released claims leave no empty folder


def test_corrupt_metrics_make_the_run_incomplete_everywhere(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = fake_run(folder, spec(seed=9))
    (folder / "runs" / run_id / "metrics.parquet").write_bytes(b"garbage, not parquet")
    store = RunStore(folder)
    assert store.status(run_id) is None  # resume runs it again
    assert run_id not in {m["run_id"] for m in store.metas()}  # table, plot, report, compact leave it out
    assert main(["table", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "incomplete" in err and run_id in err
    assert "| 2 " in out.replace("  ", " ") or " 2 " in out  # the two good seeds only
    assert main(["compact", str(folder)]) == 0
    assert (folder / "runs" / run_id).exists()  # left in its folder, never compacted as complete


def test_files_are_readable_by_the_group_under_umask_022(folder: Path) -> None:
    def unreadable() -> list[str]:
        files = [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
        assert len(files) >= 4
        return [str(p) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044]

    old = os.umask(0o022)
    try:
        run_id = fake_run(folder, spec(seed=4))
        RunStore(folder).write_study("s", {"tasks": ["digits"]}, [run_id])
        assert unreadable() == []  # run folders (meta, metrics) and the study record
        assert main(["compact", str(folder)]) == 0
        assert unreadable() == []  # the dataset's part files and stamp
    finally:
        os.umask(old)
