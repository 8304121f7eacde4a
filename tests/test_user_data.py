"""User-provided data sets read for real from small files in their official formats, written here:
CIFAR-10's binary batches (label byte + R, G, B planes) and SHD's HDF5 (spikes/times, spikes/units,
labels). Listed unavailable until a path is set; a truncated or malformed file stops a study with
one line naming it (exit 2); the cifar10 and shd studies run end to end on the written files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from bpbench.experiments.front.availability import task_problem
from bpbench.experiments.front.cli import main
from bpbench.experiments.report.summary import per_run
from bpbench.experiments.store.run_store import RunStore
from bpbench.experiments.store.run_table import RunTable
from bpbench.tasks.cifar10 import FILES as CIFAR_FILES
from bpbench.tasks.cifar10 import Cifar10, Cifar10Params
from bpbench.tasks.shd import Shd, ShdParams

CIFAR_PER_FILE = 20  # two images of each class per file


def cifar_image(index: int) -> np.ndarray:
    """A distinct (3, 32, 32) uint8 image: channel c, row r, column k -> (index*7 + c*50 + r*3 + k) % 256."""
    c, r, k = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((index * 7 + c * 50 + r * 3 + k) % 256).astype(np.uint8)


def write_cifar(folder: Path) -> Path:
    """The six binary files, each record: label byte, then the red, green and blue 32x32 planes."""
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    for name in CIFAR_FILES:
        records = []
        for i in range(CIFAR_PER_FILE):
            records.append(np.concatenate([[i % 10], cifar_image(index).reshape(-1)]).astype(np.uint8))
            index += 1
        (folder / name).write_bytes(np.concatenate(records).tobytes())
    return folder


def ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array of variable-length arrays (h5py's vlen layout)."""
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


def write_shd(folder: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """shd_train.h5 / shd_test.h5 as SHD lays them out (variable-length spike times and units)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("shd_train.h5", n_train), ("shd_test.h5", n_test)):
        labels = np.arange(n) % 20
        times, units = [], []
        for label in labels:  # class c fires channels 30c..30c+29, spread over 1 s
            k = 40
            times.append(np.sort(rng.uniform(0, 1.0, k)).astype(np.float32))
            units.append((30 * label + rng.integers(0, 30, k)).astype(np.uint16))
        with h5py.File(folder / name, "w") as f:
            f.create_dataset("spikes/times", data=ragged(times), dtype=h5py.vlen_dtype(np.float32))
            f.create_dataset("spikes/units", data=ragged(units), dtype=h5py.vlen_dtype(np.uint16))
            f.create_dataset("labels", data=labels.astype(np.uint16))
    return folder


def test_cifar10_reads_the_official_binary_records_in_order(tmp_path: Path) -> None:
    params = Cifar10Params(path=str(write_cifar(tmp_path / "c")))
    Cifar10().check(params)
    (x, y), (x_test, y_test) = Cifar10().parts(params)
    assert x.shape == (5 * CIFAR_PER_FILE, 3, 32, 32) and x_test.shape == (CIFAR_PER_FILE, 3, 32, 32)
    assert np.array_equal(x[23], cifar_image(23)) and np.array_equal(x_test[4], cifar_image(104))  # planes, rows
    assert y[23] == 3 and y_test[4] == 4
    data = Cifar10().load(params)  # official split: the test file is the test set
    assert len(data.test) == CIFAR_PER_FILE and len(data.train) + len(data.val) == 5 * CIFAR_PER_FILE
    assert data.info.input_shape == (3, 32, 32) and data.info.n_classes == 10
    mean = data.train.x.mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4)  # standardized per channel on training images


def test_shd_bins_spikes_into_frames_by_channel(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    with h5py.File(folder / "shd_train.h5", "w") as f:
        times = [np.array([0.0, 0.05, 0.69, 0.71, 1.39, 1.5], np.float32), np.array([0.2], np.float32)]
        units = [np.array([3, 3, 699, 5, 0, 7], np.uint16), np.array([10], np.uint16)]
        f.create_dataset("spikes/times", data=ragged(times), dtype=h5py.vlen_dtype(np.float32))
        f.create_dataset("spikes/units", data=ragged(units), dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=np.array([1, 2], np.uint16))
    write_shd(folder / "other")
    (folder / "other" / "shd_test.h5").rename(folder / "shd_test.h5")
    (x, y), _ = Shd().parts(ShdParams(path=str(folder), frames=2, max_time=1.4))
    assert x.shape == (2, 2, 700) and list(y) == [1, 2]
    expected = np.zeros((2, 700), np.float32)
    expected[0, 3] = 2  # 0.0 and 0.05 s: first half
    expected[0, 699] = 1  # 0.69 s < 0.7
    expected[1, 5] = expected[1, 0] = 1  # 0.71 and 1.39 s: second half; 1.5 s is past max_time
    assert np.array_equal(x[0], expected)
    assert x[1, 0, 10] == 1 and x[1].sum() == 1


def test_both_are_listed_unavailable_naming_their_files_until_a_path_is_set(tmp_path: Path) -> None:
    assert task_problem(Cifar10) == (
        "task cifar10 needs its data: set [tasks.cifar10] path to the folder with "
        "data_batch_1.bin, data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin"
    )
    assert "shd_train.h5, shd_test.h5" in str(task_problem(Shd))
    Shd().check(ShdParams(path=str(write_shd(tmp_path / "s"))))  # given a folder with the files: fine


def run_study(name: str, sets: list[str], out: Path) -> int:
    return main(["run", name, "--out", str(out), "--executor", "inline", *[a for s in sets for a in ("--set", s)]])


@pytest.mark.parametrize("broken", ["truncated", "bad_label", "missing"])
def test_a_broken_cifar_file_stops_the_study_with_one_line(tmp_path: Path, capsys, broken: str) -> None:
    folder = write_cifar(tmp_path / "c")
    target = folder / "data_batch_3.bin"
    if broken == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif broken == "bad_label":
        raw = bytearray(target.read_bytes())
        raw[3073 * 5] = 12
        target.write_bytes(bytes(raw))
    else:
        target.unlink()
    assert run_study("cifar10", [f"tasks.cifar10.path={folder}"], tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data_batch_3.bin" in err, err
    assert {"truncated": "not a whole number", "bad_label": "label 12", "missing": "has no"}[broken] in err
    assert not (tmp_path / "out" / "runs").exists()  # before any run


@pytest.mark.parametrize("broken", ["truncated", "no_labels"])
def test_a_broken_shd_file_stops_the_study_with_one_line(tmp_path: Path, capsys, broken: str) -> None:
    folder = write_shd(tmp_path / "s")
    target = folder / "shd_test.h5"
    if broken == "truncated":
        target.write_bytes(target.read_bytes()[:1000])
    else:
        with h5py.File(target, "a") as f:
            del f["labels"]
    assert run_study("shd", [f"tasks.shd.path={folder}"], tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shd_test.h5" in err, err
    assert {"truncated": "not a readable HDF5 file", "no_labels": "no dataset labels"}[broken] in err


@pytest.mark.slow  # ~30 s on a loaded 2-core machine: 6 ResNet-8 runs and 3 SHD runs
def test_cifar10_and_shd_studies_run_end_to_end_on_the_written_files(tmp_path: Path) -> None:
    cifar, shd = write_cifar(tmp_path / "c"), write_shd(tmp_path / "s")
    tiny = ["seeds=1", "budget.epochs=2", "schedule.health_every=1"]
    assert run_study("cifar10", [*tiny, f"tasks.cifar10.path={cifar}", "model.depth=8"], tmp_path / "c_out") == 0
    runs = per_run(RunTable.read(RunStore(tmp_path / "c_out")).tidy())
    assert sorted(runs["learner"]) == sorted(["backprop", "fa", "dfa", "sign_symmetry", "brsf", "frsf"])
    assert (runs["samples"] == 180).all() and runs["test_acc"].between(0, 1).all()  # 2 x 90 of 100 train, 10 val
    metrics = pd.concat(pd.read_parquet(f) for f in (tmp_path / "c_out" / "runs").glob("*/metrics.parquet"))
    health = metrics[metrics["metric"].isin(["grad_norm", "grad_alignment"])]
    assert (health.groupby(["run_id", "metric"])["layer"].nunique() == 8).all()  # every ResNet-8 weight layer
    assert health["metric"].eq("grad_alignment").any()
    assert (
        run_study(
            "shd",
            [*tiny, f"tasks.shd.path={shd}", "tasks.shd.frames=10", "tasks.shd.val_fraction=0.34"],
            tmp_path / "s_out",
        )
        == 0
    )
    runs = per_run(RunTable.read(RunStore(tmp_path / "s_out")).tidy())
    assert sorted(runs["learner"]) == ["backprop", "snn_bptt", "snn_dfa"]
    assert runs["test_acc"].between(0, 1).all()
