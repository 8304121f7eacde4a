"""Japanese Vowels (UCI; Kudo, Toyama & Shimbo 1999): which of 9 speakers said the vowel /ae/.

640 utterances by nine Japanese men, each a sequence of 7 to 29 frames of 12 LPC cepstrum
coefficients; the class is the speaker. Read by path from the two files sktime ships
(``sktime/datasets/data/JapaneseVowels/JapaneseVowels_{TRAIN,TEST}.ts``, the UEA archive's
``.ts`` text format), without importing sktime. The archive's train/test files are pooled
and split like every task here (seeded, stratified by speaker), and each utterance becomes
a fixed (frames, 12) array, frame axis first (as fsdd), zero-padded to 29 frames by default.

Split: the label *is* the speaker, so a speaker-held-out split cannot exist; every
speaker is in train, validation and test, as in the archive's own split. The archive's
test file was collected apart from its training file (its header: a distribution "based
on external factors of timing and experimental availability"); pooling the two, as here,
lets utterances of one recording occasion fall on both sides of the split, so accuracy
here is optimistic compared with the archive's train/test protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpbench.tasks.base import Task
from bpbench.tasks.sequences import SequenceParams, fix_length, package_file

FILES = ("JapaneseVowels_TRAIN.ts", "JapaneseVowels_TEST.ts")
COEFFICIENTS = 12


@dataclass(frozen=True)
class JapaneseVowelsParams(SequenceParams):
    """frames (default 29, the longest utterance: padding keeps every frame) and length:
    see ``SequenceParams``."""

    frames: int = 29


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """The cases of a UEA ``.ts`` file without timestamps: one (length, dimensions) array and
    one class label each. A case is one line: dimensions separated by ':', values by ','
    and the label last."""
    cases: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        series = [np.array(d.split(","), dtype=np.float32) for d in dims]
        if len({len(s) for s in series}) != 1:
            raise ValueError(f"{path}:{number}: dimensions of unequal length {[len(s) for s in series]}")
        cases.append(np.stack(series, axis=1))
        labels.append(label)
    if not in_data:
        raise ValueError(f"{path}: no @data line; not a .ts file")
    return cases, labels


def data_files() -> list[Path]:
    return [
        package_file(
            "sktime",
            f"datasets/data/JapaneseVowels/{name}",
            "japanese_vowels",
            f"the Japanese Vowels file {name}",
            "pip install 'bpbench[speech]'",
        )
        for name in FILES
    ]


class JapaneseVowels(Task):
    name = "japanese_vowels"
    modality = "speech"
    Params = JapaneseVowelsParams
    feature_axes = (2,)  # normalize per coefficient, pooled over frames

    def sources(self, params: JapaneseVowelsParams) -> list[Path]:
        return data_files()

    def check(self, params: JapaneseVowelsParams) -> None:
        data_files()

    def raw(self, params: JapaneseVowelsParams) -> tuple[np.ndarray, np.ndarray]:
        cases, labels = [], []
        for path in data_files():
            c, lab = read_ts(path)
            cases += c
            labels += lab
        if any(c.shape[1] != COEFFICIENTS for c in cases):
            raise ValueError(
                f"task {self.name}: expected {COEFFICIENTS} coefficients per frame, got "
                f"{sorted({c.shape[1] for c in cases})}"
            )
        speakers = sorted(set(labels), key=int)  # "1".."9"
        y = np.array([speakers.index(label) for label in labels], dtype=np.int64)
        x = np.stack([fix_length(c, params.frames, params.length) for c in cases]).astype(np.float32)
        return x, y
