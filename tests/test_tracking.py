"""Tracking (issue 33): a study's runs mirrored to real MLflow (SQLite store), TensorBoard (event
files) and W&B (offline mode) read back with each tool's own reader; ``bpbench track`` on a
committed folder; a tracker failure is a warning per run, never a lost run; a missing extra is one
line, exit 2, before any run. Also: a tuned study's Optuna journal opens with Optuna's reader."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO, bpbench

mlflow = pytest.importorskip("mlflow", reason='tracking tests need the extra: pip install "bpbench[mlflow]"')
pytest.importorskip("tensorboard", reason='tracking tests need the extra: pip install "bpbench[tensorboard]"')
pytest.importorskip("wandb", reason='tracking tests need the extra: pip install "bpbench[wandb]"')

STUDY = (
    'seeds = 1\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 2\n[learners.backprop]\n[learners.fa]\n'
)


def table_accuracies(out: Path) -> dict[str, float]:
    """learner label -> test accuracy, as ``bpbench table`` shows it (one seed: the run's own)."""
    table = pd.read_csv(io.StringIO(bpbench("table", str(out), "--format", "csv", check=True).stdout))
    return dict(zip(table["learner"], table["test_acc_mean"], strict=True))


def mlflow_runs(uri: str, study: str) -> list:
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_a_study_is_mirrored_to_mlflow_tensorboard_and_wandb(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    out, uri, tb = tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "tb"
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wb"), "OMP_NUM_THREADS": "1"}
    args = ("run", str(study), "--out", str(out), "--jobs", "1")
    bpbench(*args, "--track", f"mlflow:{uri}", "--track", f"tensorboard:{tb}", "--track", "wandb", env=env, check=True)
    shown = table_accuracies(out)
    stored = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")}
    assert len(shown) == len(stored) == 2

    runs = mlflow_runs(uri, "tiny")
    children = [r for r in runs if r.data.tags["kind"] == "run"]
    (parent,) = [r for r in runs if r.data.tags["kind"] == "study"]
    tracked = {r.data.params["label"]: r.data.metrics["test_accuracy"] for r in children}
    assert tracked == pytest.approx(shown, abs=1e-12)  # the table averages one seed: the last bit may differ
    client = mlflow.tracking.MlflowClient(uri)
    for run in children:
        meta = stored[run.data.tags["run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["commit"] == meta["git"]["commit"] and run.data.tags["study"] == "tiny"
        assert run.data.params["learner"] == meta["spec"]["learner"] and run.data.params["seed"] == "0"
        assert run.data.params["config.lr"] == str(meta["spec"]["params"]["lr"])
        assert run.data.metrics["val_accuracy"] == meta["measures"]["values"]["val_accuracy"]
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in history] == [0, 1, 2]  # the evaluation schedule: before training, every epoch
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_flops")][-1] == 2
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"table.md", "table.csv", "curves_epochs.png"} <= artifacts

    for run_id, meta in stored.items():
        events = EventAccumulator(str(tb / "tiny" / run_id))
        events.Reload()
        test = events.Scalars("test_accuracy")
        assert test[-1].step == 2
        assert test[-1].value == pytest.approx(shown[meta["spec"]["label"]], abs=1e-6)  # float32 events
        assert len(events.Scalars("val_accuracy")) == 3  # epochs 0, 1, 2
    study_events = EventAccumulator(str(tb / "tiny" / "study"), size_guidance={"images": 0})
    study_events.Reload()
    assert "curves_epochs" in study_events.Tags()["images"]

    offline = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(offline) == len(stored) + 1  # one W&B run per run, and the study's
    assert all(len(list(folder.glob("run-*.wandb"))) == 1 for folder in offline)
    records = [next(folder.glob("run-*.wandb")).read_bytes() for folder in offline]  # W&B's record log
    for run_id in stored:  # each run's config (tag.run_id) and curves went into exactly one W&B run
        assert sum(run_id.encode() in data for data in records) == 1
    assert sum(b"test_accuracy" in data for data in records) == len(stored)


def test_a_dead_tracking_server_is_one_warning_per_run(tmp_path: Path) -> None:
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY.replace("epochs = 2", "epochs = 1"))
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "OMP_NUM_THREADS": "1"}
    proc = bpbench(
        "run", str(study), "--out", str(tmp_path / "out"), "--executor", "inline",
        "--track", "mlflow:http://127.0.0.1:9", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").glob("runs/*/meta.json"))) == 2  # every run stored
    warned = [line for line in proc.stderr.splitlines() if line.startswith("bpbench: warning:")]
    per_run = [line for line in warned if " not mirrored to mlflow" in line and "warning: run " in line]
    assert len(per_run) == 2, proc.stderr


def test_a_missing_extra_is_one_line_exit_2_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpbench.experiments.front import cli
    from bpbench.experiments.front.tracking import base

    real = base.importlib.util.find_spec
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    assert cli.main(["run", str(study), "--out", str(tmp_path / "out"), "--track", "wandb"]) == 2
    assert not (tmp_path / "out").exists()
    assert cli.main(["run", str(study), "--out", str(tmp_path / "out"), "--track", "neptune"]) == 2


@pytest.mark.slow
def test_track_mirrors_a_committed_folder(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = bpbench("track", "results/quick", "--to", f"mlflow:{uri}", check=True)
    published = pd.read_csv(REPO / "results" / "quick" / "runs.csv")
    assert f"mirrored {len(published)} run(s)" in proc.stdout
    runs = [r for r in mlflow_runs(uri, "quick") if r.data.tags["kind"] == "run"]
    assert {r.data.tags["run_id"]: r.data.metrics["test_accuracy"] for r in runs} == dict(
        zip(published["run_id"], published["test_accuracy"], strict=True)
    )


def test_a_tuned_journal_opens_with_optunas_reader(tmp_path: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    import bpbench as api
    from bpbench.experiments.plan.tuning import rounded

    study = tmp_path / "tuned.toml"
    study.write_text(
        'tasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n'
        '[tuning]\ntrials = 3\nsampler = "qmc"\nfinal_seeds = 1\n'
        "[learners.backprop]\n[learners.backprop.search]\nlr = { low = 1e-4, high = 3e-2, log = true }\n"
    )
    out = tmp_path / "out"
    api.run(study, out=out, executor="inline", progress=False)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "tuning" / "journal.log")))
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    metas = [json.loads(p.read_text()) for p in out.glob("runs/*/meta.json")]
    tuning = {m["spec"]["tuning"]["trial"]: m for m in metas if m["spec"]["tuning"]["phase"] == "tuning"}
    assert len(trials) == len(tuning) == 3
    for trial in trials:
        meta = tuning[trial.number]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert rounded(trial.params["lr"]) == meta["spec"]["params"]["lr"]  # the run trains at 3 digits
        assert trial.value == meta["measures"]["values"]["val_accuracy"]
