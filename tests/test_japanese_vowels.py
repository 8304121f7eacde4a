"""Japanese Vowels, the second speech task: sktime's .ts files read by path, the task's data and
split, a learner learning it, and a clear error when the package is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bpbench.experiments.plan.config import ConfigError, to_plain
from bpbench.experiments.plan.registry import learner_registry, task_registry
from bpbench.experiments.plan.spec import RunSpec
from bpbench.experiments.plan.study import expand
from bpbench.experiments.run.runner import run
from bpbench.learners.models import ModelSpec
from bpbench.tasks import sequences
from bpbench.tasks.japanese_vowels import JapaneseVowels, read_ts


@pytest.fixture(scope="module")
def vowels():
    return JapaneseVowels().load(JapaneseVowels.Params())


def test_read_ts_parses_cases_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.ts"
    good.write_text("# comment\n@problemName X\n@dimensions 2\n@data\n1,2,3:4,5,6:a\n7,8:9,10:b\n")
    cases, labels = read_ts(good)
    assert labels == ["a", "b"] and [c.shape for c in cases] == [(3, 2), (2, 2)]
    assert np.array_equal(cases[0], np.array([[1, 4], [2, 5], [3, 6]], dtype=np.float32))
    bad = tmp_path / "bad.ts"
    bad.write_text("@data\n1,2,3:4,5:a\n")
    with pytest.raises(ValueError, match=r"bad\.ts:2: dimensions of unequal length \[3, 2\]"):
        read_ts(bad)
    bad.write_text("1,2:3,4:a\n")
    with pytest.raises(ValueError, match="no @data line"):
        read_ts(bad)


def test_task_data_and_split(vowels) -> None:
    assert vowels.info.modality == "speech" and vowels.info.input_shape == (29, 12) and vowels.info.n_classes == 9
    assert len(vowels.train) + len(vowels.val) + len(vowels.test) == 640  # the archive's 270 + 370
    for split in (vowels.train, vowels.val, vowels.test):
        assert set(split.y.tolist()) == set(range(9))  # every speaker in every split (the label is the speaker)
        assert torch.isfinite(split.x).all()
    per_coefficient = vowels.train.x.mean(dim=(0, 1))
    assert torch.allclose(per_coefficient, torch.zeros(12), atol=1e-4)  # normalized per coefficient on train
    resampled = JapaneseVowels().load(JapaneseVowels.Params(frames=10, length="resample"))
    assert resampled.info.input_shape == (10, 12)


@pytest.mark.parametrize(
    "learner, model, floor",
    [
        ("backprop", ModelSpec(hidden=(64,)), 0.9),
        ("snn_bptt", ModelSpec(hidden=(64,)), 0.8),  # the 29 frames are its time steps
    ],
)
def test_learners_learn_it(learner: str, model: ModelSpec, floor: float) -> None:
    spec = RunSpec(
        learner=learner,
        label=learner,
        params={"lr": 0.003},
        task="japanese_vowels",
        task_label="japanese_vowels",
        task_params={},
        model=to_plain(model),
        budget={"epochs": 5},
        schedule={"eval_every": 5, "health_every": 50},
        seed_index=0,
        study_seed=0,
    )
    result = run(spec, learner_registry(), task_registry(), torch.device("cpu"))
    assert result.summary["test_accuracy"] > floor  # chance is about 0.11


def test_missing_package_is_a_bad_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sequences.importlib.util.find_spec
    monkeypatch.setattr(sequences.importlib.util, "find_spec", lambda name: None if name == "sktime" else real(name))
    with pytest.raises(ConfigError, match=r"tasks\.japanese_vowels: task japanese_vowels needs the 'sktime' package"):
        expand("t", {"tasks": ["japanese_vowels"], "learners": {"backprop": {}}}, learner_registry(), task_registry())
