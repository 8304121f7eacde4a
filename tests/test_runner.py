"""The runner: tidy rows, exact FLOP counts, determinism, gradient health, failure isolation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import expand
from bpbench.experiments.run.runner import run
from bpbench.experiments.store.run_store import COLUMNS
from helpers import bpbench

STUDY = {
    "seeds": 2,
    "tasks": ["digits"],
    "model": {"hidden": [32]},
    "budget": {"epochs": 3},
    "schedule": {"health_every": 5},
    "learners": {"backprop": {"lr": 0.003}},
}


def run_inline(raw: dict, index: int = 0) -> pd.DataFrame:
    spec = expand("t", raw, learner_registry(), task_registry()).runs[index]
    result = run(spec, learner_registry(), task_registry(), torch.device("cpu"))
    return pd.DataFrame(result.rows, columns=COLUMNS)


def test_rows_are_tidy_and_learning_is_real() -> None:
    rows = run_inline(STUDY)
    assert list(rows.columns) == COLUMNS and rows["value"].notna().all()
    acc = rows[(rows.metric == "accuracy") & (rows.split == "test")].set_index("epoch")["value"]
    assert list(acc.index) == [0, 1, 2, 3]
    assert acc[0] < 0.3 and acc[3] > 0.85  # chance is 0.1
    assert rows[rows.metric == "grad_norm"]["layer"].unique().tolist() == ["fc1", "out"]
    assert (rows[rows.metric == "grad_norm"]["value"] > 0).all()
    align = rows[rows.metric == "grad_alignment"]["value"]
    assert len(align) > 0 and torch.allclose(torch.tensor(align.values), torch.ones(len(align), dtype=torch.float64))


def test_flops_equal_a_hand_count() -> None:
    rows = run_inline(STUDY)
    samples = rows[rows.metric == "train_samples"]["value"].max()
    # Linear 64->32 and 32->10; forward 2*in*out per sample; backward: weight grads for both
    # layers, input grad only for the second (the data needs none). Adam/bias ops are not matmuls.
    per_sample = 2 * (64 * 32) * 2 + 2 * (32 * 10) * 3
    assert rows[rows.metric == "train_flops"]["value"].max() == per_sample * samples
    assert samples == 3 * 1257
    assert rows[rows.metric == "peak_memory_bytes"]["value"].iloc[0] > 4 * (64 * 32 + 32 * 10)


def test_same_seed_identical_other_seed_different() -> None:
    timing = {"train_seconds"}
    a, b, c = run_inline(STUDY, 0), run_inline(STUDY, 0), run_inline(STUDY, 1)
    a, b, c = (df[~df.metric.isin(timing)].reset_index(drop=True) for df in (a, b, c))
    pd.testing.assert_frame_equal(a.drop(columns="run_id"), b.drop(columns="run_id"))
    assert not a["value"].equals(c["value"])


def test_max_seconds_stops_training_and_is_recorded() -> None:
    raw = {**STUDY, "seeds": 1, "budget": {"epochs": 500, "max_seconds": 0.3}}
    spec = expand("t", raw, learner_registry(), task_registry()).runs[0]
    result = run(spec, learner_registry(), task_registry(), torch.device("cpu"))
    assert result.summary["stopped_by"] == "max_seconds"
    assert result.summary["epochs_completed"] < 500 and result.summary["train_seconds"] >= 0.3


@pytest.mark.slow  # 70-120 s under 4x load on 2 cores, 2026-12-03 (--durations)
def test_failures_are_isolated_and_recorded(with_plugins, tmp_path: Path) -> None:
    study = tmp_path / "failing.toml"
    study.write_text(
        'seeds = 1\ntasks = ["digits", "mnist5k", "fsdd"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n'
        "[learners.exploding]\n[learners.crashing]\n[learners.killing]\n"
    )
    out = tmp_path / "out"
    proc = bpbench("run", str(study), "--out", str(out), "--jobs", "2", "--threads", "1")
    assert proc.returncode == 1, proc.stderr  # some runs failed; the study itself completed
    metas = {
        (m["spec"]["label"], m["spec"]["task"]): m
        for m in map(json.loads, map(Path.read_text, out.glob("runs/*/meta.json")))
    }
    assert len(metas) == 9
    failed = {k: m["error"] for k, m in metas.items() if m["status"] == "failed"}
    assert set(failed) == {("exploding", "fsdd"), ("crashing", "mnist5k"), ("killing", "fsdd")}
    assert "NonFiniteLoss" in failed[("exploding", "fsdd")] and "nan" in failed[("exploding", "fsdd")]
    assert "deliberate crash" in failed[("crashing", "mnist5k")]
    assert "worker process died (exit code -9)" in failed[("killing", "fsdd")]
    assert all(
        (out / "runs" / m["run_id"] / "metrics.parquet").is_file() for m in metas.values() if m["status"] == "ok"
    )
    table = bpbench("table", str(out), check=True).stdout
    crashed = next(line for line in table.splitlines() if line.startswith("crashing") and "mnist5k" in line)
    assert "(1 failed)" in crashed and "n/a" in crashed  # a failed run shows as failed, never as a 0
