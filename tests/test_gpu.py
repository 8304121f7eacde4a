"""The GPU path: which GPU each worker gets (checked anywhere), and real CUDA runs (only where CUDA is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bpbench.experiments.plan.registry import learner_registry
from bpbench.experiments.schedule.process_pool import worker_devices
from helpers import bpbench

NO_CUDA = "needs a CUDA GPU: torch.cuda.is_available() is False on this machine"
GRADIENT = ("backprop", "fa", "dfa", "sign_symmetry")  # no device-side random numbers: CPU and GPU runs agree closely


def test_process_workers_get_their_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices("cuda", 2) == ["cuda:0", "cuda:1"]  # jobs <= GPUs: one each
    assert worker_devices("cuda", 4) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]  # shared evenly
    assert worker_devices("auto", 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda:1", 3) == ["cuda:1"] * 3  # an explicit GPU is every worker's
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]


def test_ray_gpu_share() -> None:
    ray_executor = pytest.importorskip("bpbench.experiments.schedule.ray_pool", reason="Ray is not installed")
    assert ray_executor.gpu_share(0, 4) == 1.0  # default: a GPU per run
    assert ray_executor.gpu_share(4, 4) == 1.0
    assert ray_executor.gpu_share(4, 1) == 0.25  # 4 concurrent runs on 1 GPU: a quarter each
    assert ray_executor.gpu_share(3, 2) == 0.5  # packable fractions only: 2 runs per GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_every_learner_trains_and_measures_on_cuda(tmp_path: Path) -> None:
    registry = learner_registry()
    builtin = [n for n in registry.names() if registry.entries[n].target.startswith("bpbench.")]
    study = tmp_path / "gpu.toml"
    study.write_text(
        'seeds = 1\ntasks = ["digits"]\n[model]\nhidden = [32]\n[budget]\nepochs = 2\n'
        + "".join(f"[learners.{name}]\n" for name in builtin)
        + "[learners.ga.model]\nhidden = []\n[learners.cmaes.model]\nhidden = []\n"
    )
    runs = {}
    for device in ("cpu", "cuda"):
        bpbench("run", str(study), "--out", str(tmp_path / device), "--device", device, "--jobs", "1", check=True)
        runs[device] = {
            m["spec"]["label"]: m
            for m in map(json.loads, map(Path.read_text, (tmp_path / device).glob("runs/*/meta.json")))
        }
    for name in builtin:
        cpu, gpu = runs["cpu"][name], runs["cuda"][name]
        assert gpu["status"] == "ok", gpu["error"]
        assert gpu["hardware"]["device"].startswith("cuda") and gpu["hardware"]["gpu"]
        assert gpu["measures"]["values"]["peak_memory_bytes"] > 0  # from the CUDA allocator
        assert gpu["measures"]["values"]["train_flops"] == cpu["measures"]["values"]["train_flops"], (
            name
        )  # FLOPs do not depend on the device
        if name in GRADIENT:
            assert (
                abs(gpu["measures"]["values"]["test_accuracy"] - cpu["measures"]["values"]["test_accuracy"]) <= 0.02
            ), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_process_executor_spreads_workers_over_gpus(tmp_path: Path) -> None:
    study = tmp_path / "gpu.toml"
    study.write_text(
        'seeds = 4\ntasks = ["digits"]\n[model]\nhidden = [16]\n[budget]\nepochs = 1\n[learners.backprop]\n'
    )
    jobs = max(2, torch.cuda.device_count())
    bpbench("run", str(study), "--out", str(tmp_path / "out"), "--device", "cuda", "--jobs", str(jobs), check=True)
    metas = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("runs/*/meta.json")]
    assert len(metas) == 4 and all(m["status"] == "ok" for m in metas)
    assert {m["hardware"]["device"] for m in metas} <= {f"cuda:{k}" for k in range(torch.cuda.device_count())}
