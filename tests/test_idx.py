"""IDX loaders (MNIST / Fashion-MNIST format) on small fixture files written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from bpbench.experiments.plan.config import build
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.study import expand
from bpbench.experiments.run.runner import run
from bpbench.tasks.idx import FILES, FashionMnist, IdxParams, read_idx
from helpers import bpbench


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """Write ``array`` (uint8) in IDX format: magic 0x0000 08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def fixture_set(folder: Path, n_train: int, n_test: int, compress: bool) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 10-class image set: each class lights a different 6x6 block of a 28x28 image."""
    rng = np.random.default_rng(0)
    n = n_train + n_test
    y = np.arange(n) % 10
    x = rng.integers(0, 60, size=(n, 28, 28))
    for i, label in enumerate(y):
        r, c = divmod(int(label), 5)
        x[i, 4 + 12 * r : 10 + 12 * r, 2 + 5 * c : 8 + 5 * c] += 180
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(FILES, (x[:n_train], y[:n_train], x[n_train:], y[n_train:])):
        write_idx(folder / stem, array, compress)
    return x.astype(np.uint8), y


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    x, y = fixture_set(tmp_path, 30, 10, compress)
    suffix = ".gz" if compress else ""
    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), x[:30])
    assert np.array_equal(read_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}"), y[30:])


def test_bad_idx_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "junk"
    bad.write_bytes(b"\x12\x34\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match=r"shape \(5,\) \(5 bytes\) but 3 bytes follow"):
        read_idx(short)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        FashionMnist().raw(IdxParams(path=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match="missing train-images-idx3-ubyte"):
        FashionMnist().raw(IdxParams(path=str(tmp_path)))


def test_idx_task_splits_and_learns(tmp_path: Path) -> None:
    fixture_set(tmp_path / "fashion", 400, 100, compress=True)
    data = FashionMnist().load(build(IdxParams, {"path": str(tmp_path / "fashion")}, "tasks.fashion_mnist"))
    assert data.info.input_shape == (1, 28, 28) and data.info.n_classes == 10
    assert len(data.train) + len(data.val) + len(data.test) == 500
    raw = {
        "tasks": {"fashion_mnist": {"path": str(tmp_path / "fashion")}},
        "model": {"hidden": [32]},
        "budget": {"epochs": 3},
        "learners": {"backprop": {}},
    }
    spec = expand("t", raw, learner_registry(), task_registry()).runs[0]
    result = run(spec, learner_registry(), task_registry(), torch.device("cpu"))
    assert result.summary["test_accuracy"] > 0.8  # chance is 0.1


def test_missing_data_folder_is_a_bad_input_error(tmp_path: Path) -> None:
    proc = bpbench("run", "quick", "--out", str(tmp_path / "out"), "--set", "tasks=['mnist']", timeout=120)
    assert proc.returncode == 2 and "tasks.mnist: task mnist: path = '' is not a folder" in proc.stderr
    assert not (tmp_path / "out").exists()
