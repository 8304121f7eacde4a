"""User data sets that come with their own train and test files (CIFAR-10, SHD).

``UserDataParams``: ``path`` (the folder with the files; no default: the task is listed as
unavailable until a study sets it) and ``split``: "official" (default) tests on the data set's
own test files and draws validation (``val_fraction`` of the *training* files, stratified) and
``train_fraction`` from its training files, as the published numbers do; "pooled" pools both and
splits them like every other task (``val_fraction``, ``test_fraction`` of the whole).
``test_fraction`` applies to "pooled" only.

``load_official(task, train, test, params)`` splits and normalizes (training statistics only)
the two parts the task read; ``OfficialSplitTask`` is the base of such tasks: a subclass reads
its files in ``parts(params)`` and gets ``raw`` (both parts pooled) and ``load`` (by ``split``).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from bpbench.learners.base import TaskInfo
from bpbench.tasks.base import Split, Task, TaskData, TaskParams, fit_normalizer


class DataNotGiven(FileNotFoundError):
    """No folder given for a user-provided data set: ``bpbench list`` shows the task as unavailable,
    with this message naming the files it needs; a study that uses it stops before any run."""


@dataclass(frozen=True)
class UserDataParams(TaskParams):
    """path: folder holding the data set's files; split: "official" | "pooled" (module docstring)."""

    path: str = ""
    split: Literal["official", "pooled"] = "official"


def folder_of(task: str, params: UserDataParams, files: tuple[str, ...]) -> Path:
    """The task's folder, checked to hold every one of ``files`` (one line naming what is missing)."""
    if not params.path:
        raise DataNotGiven(f"task {task} needs its data: set [tasks.{task}] path to the folder with {', '.join(files)}")
    folder = Path(params.path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"task {task}: path = {params.path!r} is not a folder (it must hold {', '.join(files)})"
        )
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"task {task}: {folder} has no {', '.join(missing)}")
    return folder


def load_official(
    task: Task, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], params: UserDataParams
) -> TaskData:
    """TaskData with the data set's own test part; validation and ``train_fraction`` drawn from its
    training part (stratified, from ``split_seed``); normalized with training-split statistics."""
    x_all, y_all = train
    idx = np.arange(len(y_all))
    fit, val = train_test_split(idx, test_size=params.val_fraction, stratify=y_all, random_state=params.split_seed)
    if params.train_fraction < 1.0:
        fit, _ = train_test_split(
            fit, train_size=params.train_fraction, stratify=y_all[fit], random_state=params.split_seed + 2
        )
    fit, val = np.sort(fit), np.sort(val)
    shift, scale = fit_normalizer(x_all[fit], params.normalize, task.feature_axes)

    def part(x: np.ndarray, y: np.ndarray) -> Split:
        xn = (x - shift) / scale
        if params.normalize == "unit":
            xn = np.clip(xn, 0.0, 1.0)
        return Split(torch.from_numpy(np.ascontiguousarray(xn, dtype=np.float32)), torch.from_numpy(y.astype(np.int64)))

    n_classes = int(max(y_all.max(), test[1].max())) + 1
    info = TaskInfo(task.name, task.modality, tuple(int(s) for s in x_all.shape[1:]), n_classes)
    return TaskData(info, part(x_all[fit], y_all[fit]), part(x_all[val], y_all[val]), part(*test))


Parts = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class OfficialSplitTask(Task):
    """A task whose data set has its own training and test files (``parts``); split by ``params.split``."""

    @abstractmethod
    def parts(self, params: UserDataParams) -> Parts:
        """((training x, y), (test x, y)) as read from the task's files."""

    def raw(self, params: UserDataParams) -> tuple[np.ndarray, np.ndarray]:
        (x, y), (x_test, y_test) = self.parts(params)
        return np.concatenate([x, x_test]), np.concatenate([y, y_test])

    def load(self, params: UserDataParams) -> TaskData:
        if params.split == "pooled":
            return super().load(params)
        train, test = self.parts(params)
        return load_official(self, train, test, params)
