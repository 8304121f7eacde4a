"""Spiking Heidelberg Digits (Cramer et al. 2020) from its HDF5 files, which users download themselves.

The folder given as ``[tasks.shd] path`` holds ``shd_train.h5`` and ``shd_test.h5``. Each file
has ``spikes/times`` (per sample, the spike times in seconds), ``spikes/units`` (per sample, the
input channel 0–699 of each spike) and ``labels`` (20 classes: digits 0–9 in English and German).
They are read with h5py (the ``shd`` extra: ``pip install 'bpbench[shd]'``).

Each sample becomes a (frames, 700) array of spike counts: time 0 to ``max_time`` seconds cut into
``frames`` equal bins (spikes after ``max_time`` are dropped), so a spiking learner feeds the frames
as its time steps (``encoding = "direct"``) and every other learner sees the same counts as a dense
input. ``normalize`` defaults to "unit" (per-channel min-max from the training split: counts over
the channel's largest). The official split (the default, see ``tasks.official``) tests on
``shd_test.h5``, whose speakers are held out of ``shd_train.h5``, as published results do. A file
that is not HDF5, is truncated, lacks a dataset, or whose samples disagree in number stops the study
before any run with one line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bpbench.learners.params import check_params, param
from bpbench.tasks.official import OfficialSplitTask, Parts, UserDataParams, folder_of

FILES = ("shd_train.h5", "shd_test.h5")
CHANNELS = 700
DATASETS = ("spikes/times", "spikes/units", "labels")


@dataclass(frozen=True)
class ShdParams(UserDataParams):
    """frames: time bins per sample (>= 1); max_time: seconds binned (> 0); path, split: tasks.official."""

    frames: int = param(100, ge=1)
    max_time: float = param(1.4, gt=0)
    normalize: Literal["standard", "unit"] = "unit"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_params(self)


def h5py_module() -> Any:
    """h5py, or an ImportError naming the extra that installs it."""
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("task shd reads HDF5 with h5py: pip install 'bpbench[shd]'") from exc
    return h5py


def read_shd(path: Path, frames: int, max_time: float) -> tuple[np.ndarray, np.ndarray]:
    """Spike counts (N, frames, 700) float32 and labels (N,) int64 of one SHD file."""
    h5py = h5py_module()
    try:
        with h5py.File(path, "r") as f:
            missing = [d for d in DATASETS if d not in f]
            if missing:
                raise ValueError(f"{path}: no dataset {', '.join(missing)} (SHD files have {', '.join(DATASETS)})")
            times, units, labels = f["spikes/times"][:], f["spikes/units"][:], f["labels"][:]
    except OSError as exc:  # not HDF5, truncated, unreadable
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if not len(times) == len(units) == len(labels) or len(labels) == 0:
        raise ValueError(
            f"{path}: {len(times)} spike-time arrays, {len(units)} unit arrays and {len(labels)} labels; "
            "they must be equal in number and not empty"
        )
    x = np.zeros((len(labels), frames, CHANNELS), dtype=np.float32)
    for i, (t, u) in enumerate(zip(times, units)):
        t, u = np.asarray(t, dtype=np.float64), np.asarray(u, dtype=np.int64)
        if t.shape != u.shape:
            raise ValueError(f"{path}: sample {i} has {t.size} spike times but {u.size} units")
        if u.size and (u.min() < 0 or u.max() >= CHANNELS):
            raise ValueError(f"{path}: sample {i} has unit {int(u.max())}; SHD units are 0-{CHANNELS - 1}")
        keep = (t >= 0) & (t < max_time)
        np.add.at(x[i], ((t[keep] / max_time * frames).astype(np.int64), u[keep]), 1.0)
    return x, np.asarray(labels, dtype=np.int64)


class Shd(OfficialSplitTask):
    name = "shd"
    modality = "speech"  # (frames, channels): the frame axis first, as spiking learners take time
    Params = ShdParams
    feature_axes = (2,)  # normalize per input channel, pooled over frames

    def files(self, params: ShdParams) -> list[Path]:
        folder = folder_of(self.name, params, FILES)
        return [folder / f for f in FILES]

    def sources(self, params: ShdParams) -> list[Path]:
        return self.files(params)

    def check(self, params: ShdParams) -> None:
        """Both files present and HDF5 with SHD's datasets, equal in number (h5py needed)."""
        h5py = h5py_module()
        for path in self.files(params):
            try:
                with h5py.File(path, "r") as f:
                    missing = [d for d in DATASETS if d not in f]
                    if missing:
                        raise ValueError(
                            f"{path}: no dataset {', '.join(missing)} (SHD files have {', '.join(DATASETS)})"
                        )
                    sizes = {d: len(f[d]) for d in DATASETS}
            except OSError as exc:
                raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
            if len(set(sizes.values())) != 1 or not sizes["labels"]:
                raise ValueError(f"{path}: datasets differ in length or are empty ({sizes})")

    def parts(self, params: ShdParams) -> Parts:
        train, test = (read_shd(p, params.frames, params.max_time) for p in self.files(params))
        return train, test
