"""Option checks declared once (``learners/params.py``): every built-in learner's options refuse
non-finite floats and values outside their choices when built directly or from a study, with one
line naming the value and what is allowed; a study with ``lr = nan`` stops before any run."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from bpbench.experiments.plan.config import ConfigError, build
from bpbench.experiments.plan.registry import learner_registry
from bpbench.learners.ff import FFParams
from bpbench.learners.ga import GAParams
from bpbench.learners.models import ModelSpec
from bpbench.learners.params import check_params, param
from bpbench.learners.pc import PCParams
from conftest import bpbench

REGISTRY = learner_registry()
PARAMS = {name: REGISTRY.get(name).Params for name in REGISTRY.names() if REGISTRY.entries[name].available}


def _options(cls: type) -> list[tuple[str, object]]:
    """(field name, resolved type) of a dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def _is_float(tp: object) -> bool:
    return tp is float or float in typing.get_args(tp)


def test_every_float_option_of_every_learner_refuses_nan_and_inf() -> None:
    checked = 0
    for name, cls in PARAMS.items():
        for option, tp in _options(cls):
            if not _is_float(tp):
                continue
            for bad in (math.nan, math.inf, -math.inf):
                with pytest.raises(ValueError, match=rf"^{option} = {bad}: .*(finite|allowed is)") as caught:
                    cls(**{option: bad})
                assert "\n" not in str(caught.value)
                with pytest.raises(ConfigError, match=rf"^learners.{name}: {option} = {bad}: "):
                    build(cls, {option: bad}, f"learners.{name}")
            checked += 1
    assert checked >= 30, checked  # lr, momentum, weight_decay of most; sigma, beta, gamma, ... of the rest


def test_every_choice_option_of_every_learner_refuses_other_values() -> None:
    checked = 0
    for cls in PARAMS.values():
        for option, tp in _options(cls):
            if typing.get_origin(tp) is Literal:
                allowed = ", ".join(map(repr, typing.get_args(tp)))
                with pytest.raises(ValueError, match=f"^{option} = 'bogus': allowed are {allowed}$"):
                    cls(**{option: "bogus"})
                checked += 1
    assert checked >= 15, checked


def test_choices_given_directly_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^top_loss = 'l1': allowed are 'ce', 'mse'$"):
        PCParams(top_loss="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^negatives = 'hard': allowed are 'random_label'$"):
        FFParams(negatives="hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^arch = 'vgg': allowed are 'mlp', 'cnn', 'lenet', 'resnet'$"):
        ModelSpec(arch="vgg")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PCParams(lr=0.0), "lr = 0.0: must be > 0"),
        (lambda: PCParams(lr=math.inf), "lr = inf: must be a finite number > 0"),
        (lambda: PCParams(momentum=1.0), "momentum = 1.0: allowed is 0 <= momentum < 1"),
        (lambda: PCParams(inference_steps=0), "inference_steps = 0: must be an integer >= 1"),
        (lambda: GAParams(truncation=65), r"truncation = 65: allowed is 1 <= truncation <= population \(64\)"),
        (lambda: FFParams(threshold=-1.0), r"threshold = -1.0: must be > 0 \(or leave it unset for the layer width\)"),
        (lambda: PCParams(gamma="fast"), "gamma = 'fast': expected a number; must be > 0"),  # type: ignore[arg-type]
    ],
)
def test_one_line_names_the_value_and_what_is_allowed(make: typing.Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        make()


def test_values_in_range_pass_unchanged() -> None:
    assert FFParams(threshold=None, norm_scale=2.0).norm_scale == 2.0
    assert GAParams(truncation=64, elites=63, crossover=1.0).crossover == 1.0
    assert PCParams(momentum=0.0, weight_decay=0.0).momentum == 0.0


@dataclass(frozen=True)
class UncheckedParams:
    """A plugin's options that declare their ranges but never call check_params themselves."""

    rate: float = param(0.5, gt=0, le=1)
    mode: Literal["a", "b"] = "a"
    batch_size: int = 8


def test_the_config_builder_checks_dataclasses_that_do_not_check_themselves() -> None:
    assert UncheckedParams(rate=2.0).rate == 2.0  # no __post_init__: built directly, unchecked
    for raw, message in [
        ({"rate": 2.0}, "rate = 2.0: allowed is 0 < rate <= 1"),
        ({"rate": math.nan}, "rate = nan: allowed is 0 < rate <= 1"),
        ({"batch_size": 4, "rate": 0.0}, "rate = 0.0: allowed is 0 < rate <= 1"),
    ]:
        with pytest.raises(ConfigError, match=f"^learners.x: {message}$"):
            build(UncheckedParams, raw, "learners.x")
    with pytest.raises(ValueError, match=r"^rate = 2\.0: allowed is 0 < rate <= 1$"):
        check_params(UncheckedParams(rate=2.0))
    assert build(UncheckedParams, {"rate": 1, "mode": "b"}, "learners.x") == UncheckedParams(1.0, "b")


def test_a_study_with_lr_nan_exits_2_with_one_line_before_any_run(tmp_path: Path) -> None:
    study = tmp_path / "nan.toml"
    study.write_text('tasks = ["digits"]\n\n[learners.backprop]\nlr = nan\n')
    proc = bpbench("run", str(study), "--out", str(tmp_path / "out"), "--executor", "inline", timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "learners.backprop: lr = nan: must be a finite number > 0" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
