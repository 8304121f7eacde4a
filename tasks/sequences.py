"""What the speech tasks share: fixed-length frame sequences, and data files read from installed packages.

A speech sample is a (frames, features) array with the frame axis first, so a spiking
learner can feed it as time. Utterances vary in length; ``fix_length`` brings each one to
the task's ``frames`` (zero pad / trim the end, or resample). ``package_file`` finds a data
file a package ships without importing the package (imports of large libraries are slow,
and only the file is needed).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bpbench.tasks.base import TaskParams


@dataclass(frozen=True)
class SequenceParams(TaskParams):
    """frames: fixed length T. length: "pad_trim" (zero-pad or cut the end) or
    "resample" (linear interpolation of each utterance onto T frames)."""

    frames: int = 20
    length: Literal["pad_trim", "resample"] = "pad_trim"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames <= 0:
            raise ValueError(f"frames = {self.frames}: must be a positive integer")


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


def package_file(package: str, relative: str, task: str, what: str, install: str = "") -> Path:
    """``relative`` inside the installed ``package``; ImportError if the package is missing,
    FileNotFoundError if the file is. ``what`` says what the file is and ``install`` how to
    get the package, for the messages."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        hint = f": {install}" if install else ""
        raise ImportError(f"task {task} needs the {package!r} package (it ships {what}){hint}")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"task {task}: expected {what} at {path}")
    return path
