"""scikit-learn's digits with Gaussian pixel noise: a task with a parameter of its own (``noise``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits

from bpbench import Task, TaskParams


@dataclass(frozen=True)
class NoisyDigitsParams(TaskParams):
    """noise >= 0: standard deviation of the pixel noise (pixels range 0..16); noise_seed."""

    noise: float = 2.0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise < 0:
            raise ValueError(f"noise = {self.noise}: must be >= 0")


class NoisyDigits(Task):
    name = "noisy_digits"
    modality = "image"
    Params = NoisyDigitsParams

    def raw(self, params: NoisyDigitsParams) -> tuple[np.ndarray, np.ndarray]:
        data = load_digits()
        rng = np.random.default_rng(params.noise_seed)
        x = data.images + params.noise * rng.standard_normal(data.images.shape)
        return x.astype(np.float32)[:, None, :, :], data.target.astype(np.int64)
