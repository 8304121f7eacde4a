"""A received results folder is a boundary, part II (issue 34): symlinked partitions and datasets,
crafted records, corrupt pages, oversized parts, stale claims, escaped labels and refused options.
Each test names the finding it guards; a sentinel folder's checksums prove nothing outside changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bpbench.experiments.front.cli import main
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store.claims import Claims
from bpbench.experiments.store.run_store import RunStore
from folder_tools import fake_run, spec


def checksums(folder: Path) -> dict[str, str]:
    """Every file (and link) under ``folder`` by relative path -> its content's sha256."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = "link:" + os.readlink(path)
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A folder outside the results folder, itself a results folder with a compacted dataset."""
    folder = tmp_path / "sentinel"
    for seed in (0, 1):
        fake_run(folder, spec(seed=seed))
    assert main(["compact", str(folder)]) == 0
    (folder / "precious.txt").write_text("keep me")
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "received"
    for seed in (0, 1, 2):
        fake_run(root, spec(seed=seed))
    return root


def crafted(root: Path, change: Any, seed: int = 5) -> tuple[str, Path]:
    """A run whose meta is edited by ``change(meta)`` and re-hashed, as a sender forging a valid run id
    would: returns (its run id, its meta path)."""
    old = fake_run(root, spec(seed=seed))
    meta = json.loads((root / "runs" / old / "meta.json").read_text())
    change(meta)
    new = RunSpec.from_json(meta["spec"]).run_id
    meta["run_id"] = new
    folder = root / "runs" / new
    (root / "runs" / old).rename(folder)
    table = pq.read_table(folder / "metrics.parquet")
    table = table.set_column(0, "run_id", pa.array([new] * table.num_rows))
    pq.write_table(table, folder / "metrics.parquet")
    (folder / "meta.json").write_text(json.dumps(meta))
    return new, folder / "meta.json"


READERS = (["table"], ["table", "--score"], ["plot"], ["report"], ["compact"], ["table"])


def run_all(folder: Path, capsys: pytest.CaptureFixture[str], commands: tuple[list[str], ...] = READERS) -> str:
    err = ""
    for command in commands:
        assert main([*command, str(folder)]) == 0, (command, capsys.readouterr().err)
        err += capsys.readouterr().err
    assert "Traceback" not in err
    return err


# -- critical: compact follows a symlinked partition folder -------------------------------------------
def test_compact_never_follows_a_symlinked_partition(folder: Path, sentinel: Path) -> None:
    before = checksums(sentinel)
    assert main(["compact", str(folder)]) == 0  # the same run ids as the sentinel's: its copies would be shadowed
    link = folder / "dataset" / "runs" / "study=evil"
    link.symlink_to(next((sentinel / "dataset" / "runs").iterdir()), target_is_directory=True)
    (folder / "dataset" / "metrics" / "study=evil").symlink_to(
        next((sentinel / "dataset" / "metrics").iterdir()), target_is_directory=True
    )
    fake_run(folder, spec(seed=3))
    assert main(["compact", str(folder)]) == 0
    assert main(["table", str(folder)]) == 0
    assert checksums(sentinel) == before


def test_dataset_linked_out_of_the_folder_is_warned_and_not_read(
    tmp_path: Path, sentinel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "linked"
    fake_run(root, spec(seed=3))
    (root / "dataset").symlink_to(sentinel / "dataset", target_is_directory=True)
    before = checksums(sentinel)
    assert main(["table", str(root)]) == 0
    _out, err = capsys.readouterr()
    assert f"{root / 'dataset'}" in err and "symbolic link" in err
    assert len(RunStore(root).metas()) == 1  # the sentinel's two runs are not read
    assert main(["compact", str(root)]) == 2  # refused: never written through
    assert checksums(sentinel) == before


# -- major: corrupt data pages ------------------------------------------------------------------------
def corrupt_pages(path: Path) -> None:
    """Overwrite a parquet file's data pages, keeping its footer readable."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    end = len(data) - 8 - footer
    data[4:end] = b"\xff" * (end - 4)
    path.write_bytes(bytes(data))
    pq.read_metadata(path)  # the footer still reads


def test_corrupt_data_pages_cost_a_warning_for_that_run(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = fake_run(folder, spec(seed=8))
    corrupt_pages(folder / "runs" / run_id / "metrics.parquet")
    err = run_all(folder, capsys, READERS[:4])
    assert run_id in err and "metrics.parquet" in err


def test_corrupt_pages_in_a_compacted_part_cost_a_warning(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", str(folder)]) == 0
    part = next((folder / "dataset" / "metrics").rglob("*.parquet"))
    corrupt_pages(part)
    err = run_all(folder, capsys, READERS[:4])
    assert str(part) in err


# -- major: crafted records with wrong types ----------------------------------------------------------
def _set(path: str, value: Any) -> Any:
    def change(meta: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node = meta
        for key in head:
            node = node[key]
        node[last] = value

    return change


CRAFTED = {
    "summary.stopped_by": _set("summary.stopped_by", ["epochs"]),
    "model.hidden": _set("spec.model.hidden", [[8, 8]]),
    "params.lr": _set("spec.params.lr", {"a": 1}),
    "spec.tuning": _set("spec.tuning", "final"),
    "test_accuracy": _set("summary.test_accuracy", float("inf")),
    "measures.values.test_accuracy": _set("measures.values.test_accuracy", -5.0),
    "measures.values.val_accuracy": _set("measures.values.val_accuracy", True),
    "summary.chance_accuracy": _set("summary.chance_accuracy", "x"),
}


@pytest.mark.parametrize("field", sorted(CRAFTED))
def test_crafted_record_is_one_warning_naming_file_and_field(
    folder: Path, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, path = crafted(folder, CRAFTED[field])
    err = run_all(folder, capsys)
    assert str(path) in err and field in err
    first = err.split("\n")
    assert sum(run_id in line for line in first) >= 1
    assert main(["table", str(folder)]) == 0
    again = capsys.readouterr().err
    assert sum(run_id in line for line in again.splitlines()) == 1  # one warning per command, not one per use
    assert (folder / "runs" / run_id).exists()  # never compacted


def test_string_value_column_is_one_warning(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run_id, path = crafted(folder, lambda m: m.pop("measures"))
    metrics = path.parent / "metrics.parquet"
    table = pq.read_table(metrics)
    table = table.set_column(6, "value", pa.array([str(v) for v in table.column("value").to_pylist()]))
    pq.write_table(table, metrics)
    err = run_all(folder, capsys)
    assert str(metrics) in err and "value" in err


# -- minor: row counts bounded by the budget ----------------------------------------------------------
def test_rows_beyond_what_the_budget_allows_are_refused(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = fake_run(folder, spec(seed=6), summary={"stopped_by": "epochs", "test_accuracy": 0.9, "steps": 10})
    metrics = folder / "runs" / run_id / "metrics.parquet"
    rows = 3_000_000
    table = pa.table(
        {
            "run_id": pa.array([run_id] * 1).take(pa.array([0] * rows)),
            "epoch": pa.array([1] * rows, pa.int64()),
            "step": pa.array([1] * rows, pa.int64()),
            "split": pa.array(["val"] * 1).take(pa.array([0] * rows)),
            "metric": pa.array(["accuracy"] * 1).take(pa.array([0] * rows)),
            "layer": pa.array([""] * 1).take(pa.array([0] * rows)),
            "value": pa.array([0.5] * rows),
        }
    )
    pq.write_table(table, metrics)
    assert metrics.stat().st_size < 2_000_000
    err = run_all(folder, capsys, READERS[:3])
    assert run_id in err and "rows" in err and f"{rows}" in err


# -- major/minor: claims --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["future mtime", "empty"])
def test_impossible_claims_are_taken_over_with_a_message(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = Claims(tmp_path / "claims")
    run_id = spec().run_id
    (tmp_path / "claims" / run_id).mkdir(parents=True)
    path = tmp_path / "claims" / run_id / "0"
    if kind == "empty":  # left by a full disk or a killed driver, 10 s ago
        path.write_bytes(b"")
        os.utime(path, (time.time() - 10, time.time() - 10))
    else:
        path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "pidns": "x"}))
        future = time.time() + 10 * 24 * 3600
        os.utime(path, (future, future))
    with pytest.warns(UserWarning, match=str(path)):
        assert claims.acquire(run_id)
    claims.close()


# -- minor: labels escaped, CSV formulas neutralized ----------------------------------------------------
def test_labels_are_escaped_for_terminal_latex_and_csv(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n, label in enumerate(["evil\x1b[31m\rX\x00", "=HYPERLINK(1)", "学习规则"]):
        fake_run(folder, spec(label=label, seed=10 + n))
    assert main(["table", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x00" not in out
    assert main(["table", str(folder), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert "\x1b" not in tex and "\x00" not in tex
    assert main(["table", str(folder), "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert "\n=HYPERLINK" not in csv and ",=HYPERLINK" not in csv and "'=HYPERLINK" in csv


# -- minor: refused before work ----------------------------------------------------------------------
def test_huge_seed_count_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "s.toml"
    study.write_text('tasks = ["digits"]\n[model]\nhidden = [8]\n[budget]\nepochs = 1\n[learners.backprop]\n')
    code = main(["run", str(study), "--out", str(tmp_path / "o"), "--set", "seeds=100000000000", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "seeds" in err and err.count("\n") == 1 and "100000000000" in err


def test_score_refuses_table_only_options(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", str(folder), "--score", "--columns", "learner"]) == 2
    assert "--columns" in capsys.readouterr().err


def test_extend_never_drops_what_the_record_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bpbench.experiments.plan.registry import learner_registry, task_registry
    from bpbench.experiments.plan.study import expand, load_study
    from bpbench.experiments.store.study_record import admit

    tail = "[model]\nhidden = [8]\n[budget]\nepochs = 1\n[learners.backprop]\n"
    study, out = tmp_path / "s.toml", tmp_path / "out"
    study.write_text('tasks = ["digits"]\nseeds = 1\n' + tail + "[learners.fa]\n")
    plan = load_study(str(study), [], learner_registry(), task_registry())
    recorded = lambda raw: expand(plan.name, raw, learner_registry(), task_registry()).runs
    admit(RunStore(out), plan.name, plan.raw, plan.runs, False, recorded)  # what `run` records first
    record = (out / f"study-{plan.name}.json").read_text()
    study.write_text('tasks = ["digits"]\nseeds = 2\n' + tail)
    code = main(["run", str(study), "--out", str(out), "--extend", "--executor", "inline"])
    err = capsys.readouterr().err
    assert code == 2 and "fa" in err and "--extend" in err
    assert (out / f"study-{plan.name}.json").read_text() == record


# -- every path the store opens, as a symlink to a sentinel: nothing outside changes ------------------
def _first(root: Path, pattern: str) -> Path:
    return next(iter(sorted(root.glob(pattern))))


LINKS = {  # where the link is placed -> what of the sentinel it points to
    "runs": "runs",
    "runs/<id>": "precious-dir",
    "runs/<id>/meta.json": "precious.txt",
    "runs/<id>/metrics.parquet": "parquet",
    "study-s.json": "precious.txt",
    "dataset": "dataset",
    "dataset/STAMP": "precious.txt",
    "dataset/.compact.lock": "precious.txt",
    "dataset/runs/<partition>": "partition",
    "dataset/metrics/<part>": "parquet",
    "claims": "precious-dir",
    "claims/<id>": "precious-dir",
    "claims/<id>/0": "precious.txt",
    "figures": "precious-dir",
    "report.html": "precious.txt",
}


def place_link(root: Path, sentinel: Path, where: str) -> None:
    run_id = sorted(p.name for p in (root / "runs").iterdir())[0]
    target = {
        "runs": sentinel / "runs",
        "precious-dir": sentinel / "precious",
        "precious.txt": sentinel / "precious.txt",
        "parquet": _first(sentinel, "dataset/metrics/*/*/*/*.parquet"),
        "dataset": sentinel / "dataset",
        "partition": _first(sentinel, "dataset/runs/*"),
    }[LINKS[where]]
    if where == "dataset/metrics/<part>":
        path = _first(root, "dataset/metrics/*/*/*/*.parquet")
    else:
        path = root / where.replace("<id>", run_id).replace("<partition>", "study=evil")
    if path.exists() or path.is_symlink():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=target.is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("where", sorted(LINKS))
def test_no_command_changes_anything_through_a_symlink(
    tmp_path: Path, sentinel: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (sentinel / "precious").mkdir()
    (sentinel / "precious" / "keep.txt").write_text("keep me")
    root = tmp_path / "received"
    for seed in (0, 1):
        fake_run(root, spec(seed=seed))
    assert main(["compact", str(root)]) == 0  # a dataset with parts
    for seed in (2, 3):
        fake_run(root, spec(seed=seed))
    RunStore(root).write_study("s", {"tasks": ["digits"]}, [])
    place_link(root, sentinel, where)
    before = checksums(sentinel)
    for command in (["table"], ["table", "--score"], ["plot"], ["report"], ["compact"], ["table"]):
        code = main([*command, str(root)])
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err, (command, err)
        assert checksums(sentinel) == before, command


@pytest.mark.slow
@pytest.mark.parametrize("where", ["claims", "tuning/journal.log", "tuning/ask.lock", "study", "meta", "lock"])
def test_run_extend_and_tuned_run_change_nothing_through_a_symlink(
    tmp_path: Path, sentinel: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = 'tasks = ["digits"]\n[model]\nhidden = [8]\n[budget]\nepochs = 1\n'
    plain, tuned = tmp_path / "plain.toml", tmp_path / "tuned.toml"
    plain.write_text('tasks = ["digits"]\nseeds = 1\n' + head.split("\n", 1)[1] + "[learners.backprop]\n")
    tuned.write_text(
        head + '[tuning]\ntrials = 2\nsampler = "qmc"\nfinal_seeds = 1\n'
        "[learners.backprop]\n[learners.backprop.search]\nlr = { low = 1e-3, high = 3e-2, log = true }\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(plain), "--out", str(out), "--executor", "inline"]) == 0
    run_id = next((out / "runs").iterdir()).name
    link = {
        "claims": out / "claims",
        "tuning/journal.log": out / "tuning" / "journal.log",
        "tuning/ask.lock": out / "tuning" / "ask.lock",
        "study": out / "study-plain.json",
        "meta": out / "runs" / run_id / "meta.json",
        "lock": out / "dataset" / ".compact.lock",
    }[where]
    shutil.rmtree(link) if link.is_dir() else link.unlink(missing_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(sentinel / ("precious.txt" if where != "claims" else "runs"))
    before = checksums(sentinel)
    plain.write_text(plain.read_text().replace("seeds = 1", "seeds = 2"))
    commands = (
        ["run", str(plain), "--out", str(out), "--executor", "inline", "--extend"],
        ["run", str(tuned), "--out", str(out), "--executor", "inline"],
        ["compact", str(out)],
    )
    for command in commands:
        code = main(command)
        err = capsys.readouterr().err
        assert code in (0, 1, 2) and "Traceback" not in err, (command, err)
        assert checksums(sentinel) == before, command
