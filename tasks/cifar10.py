"""CIFAR-10 from the official *binary* version (Krizhevsky 2009), which users download themselves.

The folder given as ``[tasks.cifar10] path`` holds ``data_batch_1.bin`` … ``data_batch_5.bin``
(training) and ``test_batch.bin`` (test), as in ``cifar-10-batches-bin`` of
``cifar-10-binary.tar.gz``. Each file is a run of 3,073-byte records: one label byte (0–9), then
the 32×32 image as 1,024 red, 1,024 green and 1,024 blue bytes, rows in order. The pickled
Python version is not read (unpickling a received file can run code). A file that is not a whole
number of records, or holds a label outside 0–9, stops the study before any run with one line
naming the file. Images arrive as (3, 32, 32), standardized per channel with training statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpbench.tasks.official import OfficialSplitTask, Parts, UserDataParams, folder_of

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FILES = (*TRAIN_FILES, TEST_FILE)
RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one CIFAR-10 binary file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise ValueError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
            "(truncated, or not the binary version)"
        )
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise ValueError(f"{path}: record {bad} has label {labels[bad]}; CIFAR-10 labels are 0-9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


@dataclass(frozen=True)
class Cifar10Params(UserDataParams):
    """path: folder with data_batch_1.bin … data_batch_5.bin and test_batch.bin; split (tasks.official)."""


class Cifar10(OfficialSplitTask):
    name = "cifar10"
    modality = "image"
    Params = Cifar10Params

    def files(self, params: Cifar10Params) -> list[Path]:
        folder = folder_of(self.name, params, FILES)
        return [folder / f for f in FILES]

    def sources(self, params: Cifar10Params) -> list[Path]:
        return self.files(params)

    def check(self, params: Cifar10Params) -> None:
        """Every file present, a whole number of records, labels 0–9 (reads the sizes and the label bytes only)."""
        for path in self.files(params):
            size = path.stat().st_size
            if size == 0 or size % RECORD:
                raise ValueError(
                    f"{path}: {size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                    "(truncated, or not the binary version)"
                )
            labels = np.memmap(path, dtype=np.uint8, mode="r")[::RECORD]
            if labels.max() > 9:
                raise ValueError(f"{path}: a record has label {int(labels.max())}; CIFAR-10 labels are 0-9")

    def parts(self, params: Cifar10Params) -> Parts:
        """(train images, labels), (test images, labels) as float32 / int64."""
        files = self.files(params)
        train = [read_cifar_bin(p) for p in files[:-1]]
        x_test, y_test = read_cifar_bin(files[-1])
        x = np.concatenate([t[0] for t in train]).astype(np.float32)
        return (x, np.concatenate([t[1] for t in train])), (x_test.astype(np.float32), y_test)
