"""Tasks: conformance, deterministic stratified disjoint splits, train-only normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bpbench.experiments.plan.config import ConfigError, build
from bpbench.experiments.plan.registry import task_registry
from bpbench.tasks.base import TaskParams, stratified_split, stratified_subset
from bpbench.tasks.fsdd import FsddParams, fix_length

EXPECTED = {  # name: (modality, input shape, samples in all)
    "digits": ("image", (1, 8, 8), 1797),
    "mnist5k": ("image", (1, 28, 28), 5000),
    "fsdd": ("speech", (20, 13), 3000),
}


@pytest.fixture(scope="module")
def loaded() -> dict:
    registry = task_registry()
    return {name: registry.get(name)().load(registry.get(name).Params()) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_conformance(loaded: dict, name: str) -> None:
    data = loaded[name]
    modality, shape, total = EXPECTED[name]
    assert data.info.name == name and data.info.modality == modality
    assert data.info.input_shape == shape and data.info.n_classes == 10
    assert len(data.train) + len(data.val) + len(data.test) == total
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape[1:]) == shape
        assert torch.isfinite(split.x).all()
        assert set(split.y.tolist()) == set(range(10))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_normalization_fit_on_train_only(loaded: dict, name: str) -> None:
    data = loaded[name]
    axes = task_registry().get(name).feature_axes
    pooled = tuple(a for a in range(data.train.x.ndim) if a not in axes)
    train_mean = data.train.x.mean(dim=pooled)
    assert torch.allclose(train_mean, torch.zeros_like(train_mean), atol=1e-4)
    test_mean = data.test.x.mean(dim=pooled)
    assert not torch.allclose(test_mean, torch.zeros_like(test_mean), atol=1e-6)  # stats were not refit on test


def test_split_disjoint_stratified_and_deterministic() -> None:
    y = np.repeat(np.arange(10), 50)
    params = TaskParams(split_seed=3)
    train, val, test = stratified_split(y, params)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert len(train) + len(val) + len(test) == len(y)
    for part, share in ((train, 0.7), (val, 0.1), (test, 0.2)):
        counts = np.bincount(y[part], minlength=10)
        assert counts.max() - counts.min() <= 1 and abs(len(part) - share * len(y)) <= 10
    again = stratified_split(y, TaskParams(split_seed=3))
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = stratified_split(y, TaskParams(split_seed=4))
    assert not np.array_equal(test, other[2])


def test_train_fraction_keeps_a_stratified_subset() -> None:
    y = np.repeat(np.arange(10), 50)
    full, _, test = stratified_split(y, TaskParams())
    small, _, test_small = stratified_split(y, TaskParams(train_fraction=0.2))
    assert set(small) < set(full) and np.array_equal(test, test_small)
    assert np.bincount(y[small], minlength=10).min() >= 6


def test_stratified_subset_keeps_class_shares_and_is_fixed() -> None:
    """The subset train accuracy is measured on (experiments/run/runner.py): every class gets its share
    of n (within one sample), the same indices every time, all of them when n is not smaller."""
    y = np.random.RandomState(1).permutation(np.repeat(np.arange(5), [7, 40, 103, 250, 600]))
    for n in (1, 37, 500, 999):
        idx = stratified_subset(y, n)
        assert len(idx) == n and np.array_equal(idx, np.unique(idx))
        share = np.bincount(y, minlength=5) * n / len(y)
        assert np.all(np.abs(np.bincount(y[idx], minlength=5) - share) < 1)
        assert np.array_equal(idx, stratified_subset(y, n))
    assert not np.array_equal(stratified_subset(y, 500), stratified_subset(y, 500, seed=1))
    assert np.array_equal(stratified_subset(y, len(y)), np.arange(len(y)))


def test_fsdd_length_fixing() -> None:
    seq = np.arange(10, dtype=np.float32).reshape(5, 2)
    padded = fix_length(seq, 8, "pad_trim")
    assert padded.shape == (8, 2) and np.array_equal(padded[:5], seq) and not padded[5:].any()
    assert np.array_equal(fix_length(seq, 3, "pad_trim"), seq[:3])
    resampled = fix_length(seq, 9, "resample")
    assert resampled.shape == (9, 2) and resampled[0, 0] == 0 and resampled[-1, 0] == 8 and resampled[1, 0] == 1


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"test_fraction": 1.5}, "test_fraction = 1.5"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"frames": 0}, "frames = 0"),
        ({"length": "stretch"}, "'pad_trim' | 'resample'"),
        ({"normalise": "unit"}, "unknown key 'normalise'"),
    ],
)
def test_bad_task_params(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("|", r"\|")):
        build(FsddParams, raw, "tasks.fsdd")
