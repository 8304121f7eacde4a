"""The task interface: what is learned, split and normalized the same way for every learner.

A task turns raw arrays into a ``TaskData``: a deterministic, seeded, stratified
train/val/test split whose normalization statistics are fit on the training part only.
Subclasses implement ``raw(params)`` and set ``name``, ``modality``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from bpbench.learners.base import TaskInfo


@dataclass(frozen=True)
class TaskParams:
    """How a task is split and normalized.

    split_seed: seed of the stratified split (kept fixed across run seeds by default).
    val_fraction, test_fraction: shares of the whole data set.
    train_fraction: keep only this stratified share of the training split (overfitting studies).
    normalize: "standard" = per-feature z-score, "unit" = per-feature min-max to [0, 1]
        (for rate-coded spiking input); statistics from the training split only.
    """

    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    train_fraction: float = 1.0
    normalize: Literal["standard", "unit"] = "standard"

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{key} = {value}: allowed is 0 < {key} < 1")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction}: must be < 1")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction = {self.train_fraction}: allowed is 0 < train_fraction <= 1")


@dataclass(frozen=True)
class Split:
    """Inputs x (N, *input_shape) float32 and labels y (N,) int64."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class TaskData:
    info: TaskInfo
    train: Split
    val: Split
    test: Split


def stratified_split(y: np.ndarray, params: TaskParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test), each stratified by class, from ``params.split_seed``."""
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=params.test_fraction, stratify=y, random_state=params.split_seed)
    val_share = params.val_fraction / (1.0 - params.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=params.split_seed + 1)
    if params.train_fraction < 1.0:
        train, _ = train_test_split(
            train, train_size=params.train_fraction, stratify=y[train], random_state=params.split_seed + 2
        )
    return np.sort(train), np.sort(val), np.sort(test)


def stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed stratified subset of ``n`` samples of labels ``y`` (all of them when
    ``n >= len(y)``): each class gets its share of ``n`` (largest remainders round up, ties to the
    lower class), drawn by a ``RandomState(seed)`` permutation of the class's samples."""
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / len(y)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n - int(take.sum())]:
        take[i] += 1
    rng = np.random.RandomState(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picks))


def fit_normalizer(x_train: np.ndarray, how: str, feature_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) per feature from training data; x_norm = (x - shift) / scale.

    ``feature_axes`` are the axes that index a feature (others are pooled: samples, frames).
    Constant features get scale 1, so they map to 0 instead of NaN.
    """
    pooled = tuple(a for a in range(x_train.ndim) if a not in feature_axes)
    if how == "standard":
        shift, scale = x_train.mean(axis=pooled, keepdims=True), x_train.std(axis=pooled, keepdims=True)
    else:
        shift = x_train.min(axis=pooled, keepdims=True)
        scale = x_train.max(axis=pooled, keepdims=True) - shift
    scale = np.where(scale > 1e-8, scale, 1.0)
    return shift.astype(np.float32), scale.astype(np.float32)


class Task(ABC):
    """A classification data set with its split and normalization."""

    name: ClassVar[str]
    modality: ClassVar[Literal["image", "speech"]]
    Params: ClassVar[type] = TaskParams
    # Axes of one sample (without batch) that index features for normalization:
    # images normalize per channel (pooled over pixels, as torchvision does),
    # speech per coefficient (pooled over frames).
    feature_axes: ClassVar[tuple[int, ...]] = (1,)

    def sources(self, params: TaskParams) -> list[Path] | None:
        """The files ``raw(params)`` reads, for the machine-wide task cache (``tasks.cache``).

        The cache key hashes their bytes, so a changed file invalidates the cached arrays.
        None (the default): the task is not cached (its data may come from anywhere).
        """
        return None

    def check(self, params: TaskParams) -> None:  # noqa: B027  an optional hook: the default checks nothing
        """Raise (naming what is missing) if the data cannot be loaded; called before any run starts."""

    @abstractmethod
    def raw(self, params: TaskParams) -> tuple[np.ndarray, np.ndarray]:
        """All samples x (N, *input_shape) float32 and labels y (N,) int in [0, n_classes)."""

    def load(self, params: TaskParams) -> TaskData:
        """Split, normalize on train only, and return tensors (on the CPU)."""
        x, y = self.raw(params)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"task {self.name}: {x.shape[0]} inputs but {y.shape[0]} labels")
        train, val, test = stratified_split(y, params)
        shift, scale = fit_normalizer(x[train], params.normalize, self.feature_axes)

        def part(ix: np.ndarray) -> Split:
            xn = (x[ix] - shift) / scale
            if params.normalize == "unit":
                xn = np.clip(xn, 0.0, 1.0)
            return Split(
                torch.from_numpy(np.ascontiguousarray(xn, dtype=np.float32)), torch.from_numpy(y[ix].astype(np.int64))
            )

        info = TaskInfo(self.name, self.modality, tuple(int(s) for s in x.shape[1:]), int(y.max()) + 1)
        return TaskData(info, part(train), part(val), part(test))
