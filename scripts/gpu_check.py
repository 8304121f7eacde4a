"""The GPU check: ``quick`` with 1 seed on the CPU and on CUDA, in one command, side by side.

Prints, per learner and task, the test accuracy on both devices, their difference, the
training seconds on both and their ratio (cpu / cuda: above 1 = the GPU trains faster).
Same seeds on both devices, so runs of the gradient learners agree within about a point;
``es`` and ``ga`` draw their noise from a generator on the run's device (CUDA's Philox and the
CPU's Mersenne Twister give different streams), so their runs differ by design and are marked.
FLOPs must be equal on both devices (they count operations, not time): a mismatch is listed.

CPU runs use the process executor's default (one worker per core, one torch thread each);
CUDA runs one at a time by default (``--cuda-jobs``), so their training time is the GPU's
alone. Under 8 minutes on one GPU. Needs a CUDA build of torch (constraints.txt pins the CPU
build: on the GPU machine ``pip install torch==2.13.0`` from the PyTorch index for its CUDA).

    python -m scripts.gpu_check [--out bpbench-out/gpu_check] [--save results/gpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import load_study
from bpbench.experiments.schedule.process_pool import make_executor
from bpbench.experiments.store.run_store import RunStore

DEVICE_NOISE = {"es", "ga"}  # noise from a generator on the run's device: CPU and CUDA runs differ by design


def run_quick(device: str, jobs: int, out: Path) -> tuple[pd.DataFrame, float]:
    """Run quick (1 seed) on ``device``; (one row per completed run, wall seconds)."""
    study = load_study("quick", ["seeds=1"], learner_registry(), task_registry())
    store = RunStore(out)
    store.write_study(study.name, study.raw)
    todo = [s for s in study.runs if store.status(s.run_id) != "ok"]
    executor = make_executor("process", jobs=jobs, device=device)
    start = time.perf_counter()
    for outcome in executor.run(todo, store, lambda event: None):
        if outcome.status != "ok":
            print(f"  {device}: run {outcome.run_id} failed: {outcome.error}", file=sys.stderr)
    wall = time.perf_counter() - start
    rows = [
        {
            "learner": m["spec"]["label"],
            "task": m["spec"]["task_label"],
            "acc": m["measures"]["values"]["test_accuracy"],
            "train_s": m["measures"]["values"]["train_seconds"],
            "flops": m["measures"]["values"]["train_flops"],
        }
        for m in store.metas()
        if m["status"] == "ok"
    ]
    return pd.DataFrame(rows).set_index(["learner", "task"]), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bpbench-out/gpu_check", help="results folder (cpu/ and cuda/ inside; resumable)")
    ap.add_argument("--cpu-jobs", type=int, default=0, help="CPU worker processes (default: one per core)")
    ap.add_argument("--cuda-jobs", type=int, default=1, help="concurrent runs on the GPU (default 1)")
    ap.add_argument("--save", help="also write the report to SAVE/gpu_check.txt (e.g. results/gpu)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(
            f"gpu_check: CUDA is not available here (torch {torch.__version__}, {build}); run it on a machine "
            "with an NVIDIA GPU and a CUDA build of torch. No GPU results were produced.",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    cpu, cpu_wall = run_quick("cpu", args.cpu_jobs, out / "cpu")
    gpu, gpu_wall = run_quick("cuda", args.cuda_jobs, out / "cuda")
    both = cpu.join(gpu, lsuffix="_cpu", rsuffix="_cuda", how="outer")
    table = pd.DataFrame(
        {
            "acc cpu": both["acc_cpu"],
            "acc cuda": both["acc_cuda"],
            "Δ acc (pt)": 100 * (both["acc_cuda"] - both["acc_cpu"]),
            "train s cpu": both["train_s_cpu"],
            "train s cuda": both["train_s_cuda"],
            "cpu/cuda": both["train_s_cpu"] / both["train_s_cuda"],
            "note": ["device noise" if learner in DEVICE_NOISE else "" for learner, _ in both.index],
        }
    )
    far = table[(table["Δ acc (pt)"].abs() > 1) & (table["note"] == "")]
    missing = both[both["acc_cpu"].isna() | both["acc_cuda"].isna()]
    present = both.drop(missing.index)
    flops_differ = present[present["flops_cpu"] != present["flops_cuda"]]
    lines = [
        f"gpu_check: quick, 1 seed; torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"GPU {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores",
        f"cpu: {len(cpu)} runs in {cpu_wall:.1f} s wall (jobs {args.cpu_jobs or 'one per core'}, 1 thread each); "
        f"cuda: {len(gpu)} runs in {gpu_wall:.1f} s wall (jobs {args.cuda_jobs})",
        "",
        table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="missing"),
        "",
        f"runs off by more than 1 point (not marked device noise): {len(far)}"
        + ("" if far.empty else ": " + ", ".join(f"{label}/{t}" for label, t in far.index)),
        f"runs missing on a device (failed, see above): {len(missing)}"
        + ("" if missing.empty else ": " + ", ".join(f"{label}/{t}" for label, t in missing.index)),
        f"runs whose FLOPs differ between devices: {len(flops_differ)}"
        + ("" if flops_differ.empty else ": " + ", ".join(f"{label}/{t}" for label, t in flops_differ.index)),
    ]
    report = "\n".join(lines)
    print(report)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        (Path(args.save) / "gpu_check.txt").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
