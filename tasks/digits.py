"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from bpbench.tasks.base import Task, TaskParams


class Digits(Task):
    name = "digits"
    modality = "image"

    def sources(self, params: TaskParams) -> list[Path]:
        return [Path(str(resources.files("sklearn.datasets") / "data" / "digits.csv.gz"))]

    def raw(self, params: TaskParams) -> tuple[np.ndarray, np.ndarray]:
        data = load_digits()
        return data.images.astype(np.float32)[:, None, :, :], data.target.astype(np.int64)
