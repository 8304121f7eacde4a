"""Table time and peak memory at sweep scale, before and after ``bpbench compact``.

    python -m benchmarks.results_scale [--runs 2000 20000] [--dir DIR] [--keep] [--plot]

For each N, writes N *synthetic* run folders into a fresh folder (default: a temporary one,
deleted afterwards; never a real results folder: the script refuses a folder that exists).
Every synthetic meta.json says so under ``"synthetic"``, its study is ``synthetic-scale`` and its
task ``synthetic``: timing data, not results. Each run looks like a 20-epoch MLP run: ~1,200
tidy metric rows (accuracy and loss per split, counts and costs per evaluation, per-layer
gradient norms and cosines every 10 steps) and a meta.json of the usual size with its final
measures. Then it times ``bpbench table DIR --format csv`` in a fresh process (wall seconds and
the process's peak resident memory, from ``os.wait4``), runs ``bpbench compact DIR`` (timed too)
and times the table again, checking that it prints the same numbers. The across-task scores
(``bpbench table --score``: time to target from every run's per-epoch validation rows through
DuckDB, performance profiles, ranks, IQM) are timed from the run folders and from the dataset,
and must agree too. With ``--plot`` it also
times ``bpbench plot`` on the compacted dataset (figures need per-epoch and per-step rows, so
their memory grows with the number of runs: this measures by how much).

Sweep shape: 10 learner labels x 4 tasks x 10 learning rates x N/400 seeds.

Measured 2026-12-03 on 2 cores (load average ~1-2 from one other job), 20,000 runs:
``bpbench table --score`` from the run folders 16.6 s, peak 934 MiB; from the compacted dataset
7.9 s, 577 MiB. ``bpbench table`` 25.8 s / 894 MiB and 19.1 s / 532 MiB. ``bpbench plot`` from the
compacted dataset 226 s, peak 721 MiB (44 files); ``bpbench report`` 224 s, 675 MiB (2,000 runs:
plot 557 MiB). Before figures read their rows per figure (``report/figure_data.py``), plot
needed 5.9 GiB at 20,000 runs and 977 MiB at 2,000.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.store import records
from bpbench.experiments.store.validate import meta_problem

LABELS = ("backprop", "fa", "dfa", "sign_symmetry", "ga", "es", "snn_bptt", "snn_dfa", "pc", "ff")
TASKS = ("digits", "mnist5k", "fsdd", "fashion_mnist")
LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)
EPOCHS, STEPS_PER_EPOCH, HEALTH_EVERY = 20, 55, 10
LAYERS = ("fc1", "fc2", "out")
SYNTHETIC = "benchmarks/results_scale.py: synthetic run for timing the results tools; not a result"
COST_METRICS = (
    "synops_per_sample",
    "synops_dense_per_sample",
    "macs_per_sample",
    "acs_per_sample",
    "energy_per_sample_j",
    "synops_from_flops",
)


def template_rows(rng: np.random.Generator) -> dict[str, list]:
    """One run's tidy rows (without run_id), shaped like a 20-epoch MLP run's."""
    cols: dict[str, list] = {k: [] for k in ("epoch", "step", "split", "metric", "layer", "value")}

    def add(epoch: int, step: int, split: str, metric: str, value: float, layer: str = "") -> None:
        for key, v in zip(cols, (epoch, step, split, metric, layer, float(value))):
            cols[key].append(v)

    for epoch in range(EPOCHS + 1):
        step = epoch * STEPS_PER_EPOCH
        for split in ("train", "val", "test"):
            add(epoch, step, split, "accuracy", min(0.99, 0.1 + 0.045 * epoch + rng.normal(0, 0.01)))
            add(epoch, step, split, "loss", 2.3 / (1 + epoch))
        for metric, value in (
            ("train_seconds", 0.1 * step),
            ("train_flops", 4.2e8 * step),
            ("train_samples", 64 * step),
            ("forward_samples", 64 * step),
        ):
            add(epoch, step, "train", metric, value)
        for metric in COST_METRICS:
            add(epoch, step, "test", metric, 0.0 if metric == "synops_from_flops" else 8.45e4)
        if epoch:
            for sampled in range(step - STEPS_PER_EPOCH + HEALTH_EVERY, step + 1, HEALTH_EVERY):
                for layer in LAYERS:
                    add(epoch, sampled, "train", "grad_norm", rng.lognormal(-2, 0.5), layer)
                    add(epoch, sampled, "train", "grad_alignment", rng.uniform(0.3, 1.0), layer)
                    add(epoch, sampled, "train", "grad_projection", rng.uniform(0.1, 1.2), layer)
                add(epoch, sampled, "train", "grad_norm_ratio", rng.lognormal(-0.5, 0.3))
                add(epoch, sampled, "train", "grad_alignment_mean", rng.uniform(0.5, 0.9))
                add(epoch, sampled, "train", "grad_projection_mean", rng.uniform(0.1, 1.2))
    add(EPOCHS, EPOCHS * STEPS_PER_EPOCH, "train", "peak_memory_bytes", 1.9e6)
    add(EPOCHS, EPOCHS * STEPS_PER_EPOCH, "train", "state_bytes", 3.1e5)
    return cols


def meta_of(label: str, task: str, lr: float, seed: int, measures: dict) -> dict:
    """A synthetic run's meta.json; its run id is its spec's hash, as a real run's (folders are validated)."""
    spec = {
        "learner": label,
        "label": label,
        "params": {"lr": lr, "optimizer": "adam", "batch_size": 64, "momentum": 0.9, "weight_decay": 0.0},
        "task": task,
        "task_label": task,
        "task_params": {"split_seed": 0, "val_fraction": 0.1, "test_fraction": 0.2, "normalize": "standard"},
        "model": {"arch": "mlp", "hidden": [256, 256], "activation": "relu", "batchnorm": False, "dropout": 0.0},
        "budget": {"epochs": EPOCHS, "flops": None, "samples": None, "max_seconds": None},
        "schedule": {"eval_every": 1, "health_every": HEALTH_EVERY},
        "seed_index": seed,
        "study_seed": 0,
        "varied": ["params.lr"],
        "study": "synthetic-scale",
    }
    return {
        "run_id": RunSpec.from_json(spec).run_id,
        "synthetic": SYNTHETIC,
        "seed": seed,
        "spec": spec,
        "status": "ok",
        "error": None,
        "git": {"commit": "0" * 40, "dirty": False, "source": "synthetic", "reason": None},
        "versions": {p: "0.0" for p in ("bpbench", "torch", "numpy", "pandas", "scikit-learn", "deap", "snntorch")},
        "providers": {"learner": {"name": label, "distribution": "synthetic"}},
        "hardware": {"device": "cpu", "cpu": "synthetic", "cores": 2, "torch_threads": 1},
        "start_time": "2026-01-01T00:00:00.000+00:00",
        "end_time": "2026-01-01T00:00:10.000+00:00",
        "summary": {
            "epochs_completed": EPOCHS,
            "steps": EPOCHS * STEPS_PER_EPOCH,
            "stopped_by": "epochs",
            "state_bytes": 310000,
            "exact_layers": ["out"],
            "chance_accuracy": 0.1,
            "n_classes": 10,
        },
        "unmeasured": {},
        "measures": measures,
    }


def write_synthetic(root: Path, n: int) -> None:
    """N synthetic run folders under ``root/runs`` (see the module doc)."""
    rng = np.random.default_rng(0)
    base = template_rows(rng)
    base_table = pa.table(base)
    frame = base_table.to_pandas().assign(run_id="x")
    base_measures = records.record(frame)["values"]
    seeds = max(1, n // (len(LABELS) * len(TASKS) * len(LRS)))
    count = 0
    for seed in range(seeds + 1):
        for label in LABELS:
            for task in TASKS:
                for lr in LRS:
                    if count == n:
                        return
                    factor = 1.0 + rng.normal(0, 0.01)  # every value scaled: the measures scale with them
                    measures = {
                        "version": records.VERSION,
                        "values": {
                            k: (v if isinstance(v, bool) or v is None else v * factor) for k, v in base_measures.items()
                        },
                    }
                    meta = meta_of(label, task, lr, seed, measures)
                    run_id = meta["run_id"]
                    table = pa.table(
                        {
                            "run_id": pa.array([run_id] * base_table.num_rows),
                            **{k: base_table[k] for k in ("epoch", "step", "split", "metric", "layer")},
                            "value": pa.array(np.asarray(base["value"]) * factor),
                        }
                    )
                    folder = root / "runs" / run_id
                    folder.mkdir(parents=True)
                    pq.write_table(table, folder / "metrics.parquet")
                    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
                    count += 1


def check_readable(root: Path) -> None:
    """Exit unless the first synthetic run passes the checks every results folder gets (a run the
    tools skip would make every timing meaningless)."""
    first = next((root / "runs").iterdir())
    problem = meta_problem(json.loads((first / "meta.json").read_text()), first.name)
    if problem is not None:
        raise SystemExit(f"synthetic run {first.name} would be skipped by every command: {problem}")


def timed_cli(*args: str) -> tuple[float, float, str]:
    """(wall seconds, peak resident MiB, stdout) of ``python -m bpbench ARGS`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "bpbench", *args], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"bpbench {' '.join(args)} exited {proc.returncode}: {err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--dir", help="where to write the synthetic folders (must not exist; default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic folders")
    parser.add_argument("--plot", action="store_true", help="also time bpbench plot and report after compact")
    args = parser.parse_args()
    parent = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bpbench-scale-"))
    if args.dir:
        if parent.exists():
            raise SystemExit(f"--dir {args.dir}: exists; give a new folder (synthetic runs never join real ones)")
        parent.mkdir(parents=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        for n in args.runs:
            root = parent / f"synthetic-{n}"
            start = time.perf_counter()
            write_synthetic(root, n)
            print(f"N = {n}: wrote {n} synthetic runs in {time.perf_counter() - start:.1f} s")
            check_readable(root)
            wall, peak, before = timed_cli("table", str(root), "--format", "csv")
            print(f"  table from run folders:      {wall:6.1f} s, peak {peak:6.0f} MiB")
            wall, peak, score_before = timed_cli("table", str(root), "--score", "--format", "csv")
            print(f"  scores from run folders:     {wall:6.1f} s, peak {peak:6.0f} MiB")
            wall, peak, _ = timed_cli("compact", str(root))
            print(f"  compact:                     {wall:6.1f} s, peak {peak:6.0f} MiB")
            wall, peak, after = timed_cli("table", str(root), "--format", "csv")
            print(f"  table from compacted dataset: {wall:5.1f} s, peak {peak:6.0f} MiB")
            print(f"  same table before and after compact: {before == after}")
            wall, peak, score_after = timed_cli("table", str(root), "--score", "--format", "csv")
            print(f"  scores from compacted dataset: {wall:4.1f} s, peak {peak:6.0f} MiB")
            print(f"  same scores before and after compact: {score_before == score_after}")
            if args.plot:
                wall, peak, _ = timed_cli("plot", str(root), "--out", str(root / "figures"))
                figures = len(list((root / "figures").glob("*.png")))
                print(f"  plot from compacted dataset:  {wall:5.1f} s, peak {peak:6.0f} MiB ({figures} figures)")
                wall, peak, _ = timed_cli("report", str(root), "--out", str(root / "report.html"))
                print(f"  report from compacted dataset: {wall:4.1f} s, peak {peak:6.0f} MiB")
            shutil.rmtree(root) if not args.keep else None
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(parent, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
