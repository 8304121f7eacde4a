"""MNIST-format (IDX) image sets that users download themselves: MNIST, Fashion-MNIST.

``read_idx(path)`` reads one IDX file (``.gz`` or not) into a numpy array. ``IdxTask`` joins
the standard four files of a folder (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``) into one set
that the usual seeded stratified split divides; ``train_fraction`` keeps a smaller share;
``pad`` zero-pads the images (2: to 32x32, for the CIFAR ResNet).

- ``fashion_mnist``: default folder /usr/share/datasets/fashion-mnist (Debian's
  ``dataset-fashion-mnist`` package puts the full set there).
- ``mnist``: no default folder; give it with ``[tasks.mnist] path = "..."``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpbench.learners.params import param
from bpbench.tasks.base import Task, TaskParams

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path) -> np.ndarray:
    """The array stored in IDX file ``path`` (gzip-compressed when it ends in .gz)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = raw[4 + 4 * ndim :]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but {len(data)} bytes follow")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def find(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``; a clear error naming both when neither exists."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"missing {stem}[.gz] in {folder}")


@dataclass(frozen=True)
class IdxParams(TaskParams):
    """path: the folder holding the four IDX files ("" = the task's default folder).
    pad: zero pixels added on every side (2: 28x28 -> 32x32, the CIFAR ResNet's input size)."""

    path: str = ""
    pad: int = param(0, ge=0)


class IdxTask(Task):
    """An image set in the four standard IDX files; train and test files are pooled, then split."""

    modality = "image"
    Params = IdxParams
    default_path = ""

    def files(self, params: IdxParams) -> list[Path]:
        """The four IDX files of the task's folder (raises FileNotFoundError naming what is missing)."""
        folder = Path(params.path or self.default_path)
        if (not params.path and not self.default_path) or not folder.is_dir():
            raise FileNotFoundError(
                f"task {self.name}: path = {params.path or self.default_path!r} is not a folder; set "
                f"[tasks.{self.name}] path to the folder with {', '.join(FILES)} (.gz allowed)"
            )
        return [find(folder, stem) for stem in FILES]

    def sources(self, params: IdxParams) -> list[Path]:
        return self.files(params)

    def check(self, params: IdxParams) -> None:
        self.files(params)

    def raw(self, params: IdxParams) -> tuple[np.ndarray, np.ndarray]:
        tr_x, tr_y, te_x, te_y = (read_idx(path) for path in self.files(params))
        x = np.concatenate([tr_x, te_x]).astype(np.float32)[:, None, :, :]
        if params.pad:
            x = np.pad(x, ((0, 0), (0, 0), (params.pad, params.pad), (params.pad, params.pad)))
        y = np.concatenate([tr_y, te_y]).astype(np.int64)
        if x.shape[0] != y.shape[0] or x.ndim != 4:
            raise ValueError(f"task {self.name}: {x.shape[0]} images of shape {x.shape[1:]} but {y.shape[0]} labels")
        return x, y


class FashionMnist(IdxTask):
    name = "fashion_mnist"
    default_path = "/usr/share/datasets/fashion-mnist"


class Mnist(IdxTask):
    name = "mnist"
